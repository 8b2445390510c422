/**
 * The agents' one masking point: every registered value and the forms tools print it in.
 */
import assert from 'node:assert/strict';
import { Masker, maskedForms } from '../../common/agent/masker.ts';

const PEM = ['-----BEGIN PRIVATE KEY-----', 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDcanaryLineOne', 'Zm9vYmFyYmF6cXV4Y2FuYXJ5TGluZVR3b2NhbmFyeUxpbmVUd29jYW5hcnlMaW5l', '-----END PRIVATE KEY-----'].join('\n');

describe('masker (common/agent/masker.ts)', () => {
  it('masks a value in clear and in each common encoding', () => {
    const m = new Masker();
    const v = 'pa ss/wo"rd+1';
    m.add(v);
    const b = Buffer.from(v);
    for (const form of [v, JSON.stringify(v).slice(1, -1), encodeURIComponent(v), encodeURIComponent(v).replace(/%20/g, '+'), b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64'), b.toString('base64url')]) {
      const out = m.apply(`before ${form} after`);
      assert.equal(out, 'before *** after', form);
    }
  });

  it('masks the base64 of a value inside a longer encoded text, at every byte offset', () => {
    const m = new Masker();
    const v = 'canary-in-the-middle';
    m.add(v);
    for (const prefix of ['', 'a', 'ab', 'abc', 'user: x\npassword: ']) {
      const enc = Buffer.from(`${prefix}${v}-and-more-after`).toString('base64');
      const out = m.apply(enc);
      assert.ok(out.includes('***'), `prefix ${JSON.stringify(prefix)}: ${out}`);
      assert.ok(!Buffer.from(out.replace(/\*\*\*/g, ''), 'base64').toString().includes('in-the-middle'), out);
    }
  });

  it('masks a multi-line value whole and line by line (a tool printing it line by line), and its JSON form', () => {
    const m = new Masker();
    m.add(PEM);
    assert.equal(m.apply(`key:\n${PEM}\nend`), 'key:\n***\nend');
    for (const line of PEM.split('\n')) assert.equal(m.apply(`  ${line}`), '  ***', line);
    assert.equal(m.apply(JSON.stringify({ msg: `failed: ${PEM}` })), JSON.stringify({ msg: 'failed: ***' }));
    const wrapped = Buffer.from(PEM).toString('base64').replace(/(.{76})/g, '$1\n');
    for (const line of wrapped.split('\n').filter((l) => l.length >= 6)) assert.ok(m.apply(line).includes('***'), line);
  });

  it('masks short values where they stand as whole tokens, and only there', () => {
    const m = new Masker();
    m.add('x9');
    assert.equal(m.apply('token=x9 and "x9", x9.'), 'token=*** and "***", ***.');
    assert.equal(m.apply('ax9b x99'), 'ax9b x99');
  });

  it('forgets a value when the last execution that registered it releases it', () => {
    const m = new Masker();
    const a = m.scope();
    const b = m.scope();
    a.add('shared-secret');
    b.add('shared-secret');
    a.close();
    assert.equal(m.apply('shared-secret'), '***');
    b.close();
    assert.equal(m.apply('shared-secret'), 'shared-secret');
  });

  it('masks every string of a JSON tree, keys included, without touching other values', () => {
    const m = new Masker();
    m.add('deep-secret');
    const out = m.applyDeep({ steps: [{ error: { message: 'helm said deep-secret' }, n: 1, ok: true }], ['deep-secret']: null });
    assert.deepEqual(JSON.parse(JSON.stringify(out)), { steps: [{ error: { message: 'helm said ***' }, n: 1, ok: true }], '***': null });
  });

  it('lists the value itself among its forms', () => {
    assert.equal(maskedForms('abcdef')[0], 'abcdef');
  });
});

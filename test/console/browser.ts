/**
 * Browser-test helpers: Debian's Chromium (/usr/bin/chromium, never a downloaded browser) driven by
 * playwright-core, trusting only the control plane's server key (its SPKI pinned with
 * --ignore-certificate-errors-spki-list, so no other certificate error is ignored); axe-core run in
 * the page (no serious or critical violation allowed); screenshots at desktop and phone width, light
 * and dark, into docs/console/ when TETHER_CONSOLE_SCREENSHOTS=1 (the way to refresh them), otherwise
 * into a temporary folder (still taken, so `npm test` exercises the code and leaves the work tree clean).
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from '../support/control-plane.ts';

export const CHROMIUM = '/usr/bin/chromium';
/** The committed screenshots, linked from docs/console.md. */
export const DOCS_SHOTS_DIR = join(REPO_ROOT, 'docs', 'console');
/** Where this run writes its screenshots: docs/console/ only when asked to refresh them. */
export const SHOTS_DIR = process.env.TETHER_CONSOLE_SCREENSHOTS === '1' ? DOCS_SHOTS_DIR : mkdtempSync(join(tmpdir(), 'tether-console-shots-'));
export const VIEWPORTS = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } } as const;

/** base64 SHA-256 of a certificate's SubjectPublicKeyInfo, as Chromium's SPKI list takes it. */
export function spkiHash(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

export async function launchChromium(o: { trustCertPem: string; hostRules?: string }): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} (Debian's chromium package; .ci/run installs it) is needed`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [`--ignore-certificate-errors-spki-list=${spkiHash(o.trustCertPem)}`, ...(o.hostRules ? [`--host-resolver-rules=${o.hostRules}`] : []), '--no-sandbox', '--disable-dev-shm-usage'],
  });
}

const AXE = readFileSync(join(REPO_ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/** axe-core on the page as it is (WCAG 2.0/2.1 A and AA rules and best practices): serious and critical violations. */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  // Evaluated through the DevTools protocol, which the page's CSP (no inline script) does not block.
  if ((await page.evaluate('typeof window.axe')) === 'undefined') await page.evaluate(AXE);
  const r = (await page.evaluate(`axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }, resultTypes: ['violations'] })`)) as { violations: AxeViolation[] };
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/**
 * For each colour scheme: axe (asserted clean) at desktop and phone width, and a screenshot of
 * each into SHOTS_DIR/<name>-<desktop|phone>-<light|dark>.png. Leaves the page at desktop, light.
 */
export async function checkPage(page: Page, name: string): Promise<{ axeRuns: number }> {
  mkdirSync(SHOTS_DIR, { recursive: true });
  let axeRuns = 0;
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme, reducedMotion: 'reduce' });
    for (const [vp, size] of Object.entries(VIEWPORTS)) {
      await page.setViewportSize(size);
      await page.waitForTimeout(50); // one frame for the layout
      const v = await axeViolations(page);
      axeRuns++;
      assert.deepEqual(
        v.map((x) => `${x.id} (${x.impact}): ${x.help} at ${JSON.stringify(x.nodes.slice(0, 3).map((n) => n.target))}`),
        [],
        `axe on ${name}, ${vp}, ${scheme}`,
      );
      const path = join(SHOTS_DIR, `${name}-${vp}-${scheme}.png`);
      await page.screenshot({ path });
      assert.ok(existsSync(path), `screenshot ${path} written`);
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize(VIEWPORTS.desktop);
  return { axeRuns };
}

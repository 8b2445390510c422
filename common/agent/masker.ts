/** Replaces registered secret values in text with a fixed mask (longest first, so no partial leaks). */
export class Masker {
  private values: string[] = [];

  add(value: string): void {
    // Very short values would mask ordinary words and say more than they hide.
    if (value.length < 4 || this.values.includes(value)) return;
    this.values.push(value);
    this.values.sort((a, b) => b.length - a.length);
  }

  apply(text: string): string {
    let out = text;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join('***');
    return out;
  }
}

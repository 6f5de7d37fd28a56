// Whether a PNG shows something: decoded by the same Chromium (a canvas in a blank page), so no
// image library is needed. A blank or failed capture is one colour (white, black, grey), or a
// few at most; a rendered page has text, whose anti-aliasing alone gives dozens of colours.

import fs from 'node:fs';

/** The least a PNG must show: this many distinct colours ... */
export const MIN_COLOURS = 24;
/** ... and no colour covering more than this share of its pixels. */
export const MAX_DOMINANT = 0.985;

/**
 * Pixel statistics of the PNG at `path`: width, height, distinct colours, the most common
 * colour's share; `ok` and `why` say whether it passes the bar above.
 */
export async function pngStats(context, path) {
  const data = fs.readFileSync(path).toString('base64');
  const page = await context.newPage();
  try {
    const s = await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(img, 0, 0);
      const px = new Uint32Array(ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
      const counts = new Map();
      for (const p of px) counts.set(p, (counts.get(p) || 0) + 1);
      let top = 0;
      for (const n of counts.values()) top = Math.max(top, n);
      return { width: canvas.width, height: canvas.height, colours: counts.size, dominant: px.length ? top / px.length : 1 };
    }, data);
    const why = [];
    if (s.width === 0 || s.height === 0) why.push('it has no pixels');
    if (s.colours < MIN_COLOURS) why.push(`only ${s.colours} distinct colours (at least ${MIN_COLOURS} expected)`);
    if (s.dominant > MAX_DOMINANT) why.push(`one colour covers ${(100 * s.dominant).toFixed(1)} % of it (at most ${100 * MAX_DOMINANT} %)`);
    return { ...s, dominant: Number(s.dominant.toFixed(4)), ok: why.length === 0, why: why.join('; ') };
  } finally {
    await page.close();
  }
}

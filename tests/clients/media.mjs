// Media helpers for the matrix-js-sdk scenarios: real PNG and JPEG files
// made by Pillow (python3-pil, a test dependency), and their dimensions read
// back from the bytes the server returns.
import { execFileSync } from "node:child_process";

// A W×H gradient image in FORMAT ("PNG" or "JPEG"), as a Buffer.
export function makeImage(format, w, h) {
  const py = `import io,sys
from PIL import Image
im = Image.new("RGB", (${w}, ${h}))
im.putdata([((x * 255) // ${w}, (y * 255) // ${h}, 128) for y in range(${h}) for x in range(${w})])
b = io.BytesIO(); im.save(b, "${format}"); sys.stdout.buffer.write(b.getvalue())`;
  return execFileSync("/usr/bin/python3", ["-c", py], { maxBuffer: 1 << 26 });
}

// [width, height] of a PNG or JPEG buffer, or null.
export function imageSize(buf) {
  if (buf.length > 24 && buf.readUInt32BE(0) === 0x89504e47)
    return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
  if (buf.length > 4 && buf[0] === 0xff && buf[1] === 0xd8) {
    let i = 2;
    while (i + 9 < buf.length) {
      if (buf[i] !== 0xff) return null;
      const marker = buf[i + 1], len = buf.readUInt16BE(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker))
        return [buf.readUInt16BE(i + 7), buf.readUInt16BE(i + 5)];
      i += 2 + len;
    }
  }
  return null;
}

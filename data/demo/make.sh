#!/usr/bin/env bash
# Makes the demo corpus in data/demo/files/: six pictures, a 6-second video
# of four scenes and a four-page PDF, all generated here (FFmpeg's built-in
# test sources and a PDF written by hand with Python's standard library);
# nothing is downloaded. Needs ffmpeg (with libx264) and python3.
#
#   data/demo/make.sh            # then: tkr-embed import data/demo/files -c demo
set -euo pipefail
cd "$(dirname "$0")"
out=files
mkdir -p "$out"

# --- Pictures: one frame of each of FFmpeg's pattern generators. ----------
picture() { # name, lavfi source
  ffmpeg -v error -y -f lavfi -i "$2" -frames:v 1 "$out/$1.png"
}
picture mandelbrot "mandelbrot=size=320x240"
picture test-card "testsrc2=size=320x240"
picture colour-bars "smptehdbars=size=320x240"
picture cellular-automaton "cellauto=s=320x240:rule=110"
picture sunset-gradient "gradients=s=320x240:c0=orange:c1=purple:seed=7"
picture game-of-life "life=s=320x240:mold=10:ratio=0.5:seed=3:death_color=#203040:life_color=#e0c040"

# --- Video: four scenes of 1.5 s each, so every segment looks different. ---
# Keyframe every second; the sampler seeks and decodes forward.
ffmpeg -v error -y \
  -f lavfi -i "mandelbrot=size=320x240:rate=10,trim=duration=1.5" \
  -f lavfi -i "testsrc2=size=320x240:rate=10,trim=duration=1.5" \
  -f lavfi -i "smptehdbars=size=320x240:rate=10,trim=duration=1.5" \
  -f lavfi -i "life=s=320x240:rate=10:mold=10:ratio=0.5:seed=3,trim=duration=1.5" \
  -filter_complex "[0:v][1:v][2:v][3:v]concat=n=4:v=1:a=0,format=yuv420p[v]" -map "[v]" \
  -c:v libx264 -preset veryfast -crf 30 -g 10 -threads 1 -movflags +faststart "$out/four-scenes.mp4"

# --- PDF: four pages, each a coloured shape and a line of text. ------------
python3 - "$out/field-guide.pdf" <<'PY'
import sys

pages = [
    ((0.85, 0.15, 0.1), "circle", "Red circle: a ripe tomato seen from above"),
    ((0.1, 0.5, 0.9), "waves", "Blue waves: the sea on a calm morning"),
    ((0.1, 0.65, 0.2), "triangle", "Green triangle: a pine tree on a hill"),
    ((0.95, 0.8, 0.1), "rays", "Yellow rays: the sun at noon"),
]
W, H = 400, 300

def shape(kind):
    cx, cy = W / 2, H / 2 + 10
    if kind == "circle":  # four Bezier arcs
        r, k = 90, 90 * 0.5523
        return (f"{cx + r} {cy} m {cx + r} {cy + k} {cx + k} {cy + r} {cx} {cy + r} c "
                f"{cx - k} {cy + r} {cx - r} {cy + k} {cx - r} {cy} c "
                f"{cx - r} {cy - k} {cx - k} {cy - r} {cx} {cy - r} c "
                f"{cx + k} {cy - r} {cx + r} {cy - k} {cx + r} {cy} c f\n")
    if kind == "waves":
        ops = []
        for row in range(4):
            y = 70 + row * 45
            ops.append(f"40 {y} 300 30 re f\n")
        return "".join(ops)
    if kind == "triangle":
        return f"{cx} {cy + 100} m {cx - 90} {cy - 90} l {cx + 90} {cy - 90} l f\n"
    ops = [f"{cx - 50} {cy - 50} 100 100 re f\n"]
    for dx, dy in [(-110, 0), (90, 0), (0, 90), (0, -110)]:
        ops.append(f"{cx + dx} {cy + dy} 20 20 re f\n")
    return "".join(ops)

objs = []
def add(body):
    objs.append(body)
    return len(objs)

catalog, pages_obj = add(None), add(None)
font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
kids = []
for (r, g, b), kind, text in pages:
    content = (f"{r} {g} {b} rg\n" + shape(kind) +
               f"0 0 0 rg BT /F1 14 Tf 20 {H - 30} Td ({text}) Tj ET\n").encode()
    stream = add(b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream")
    kids.append(add(
        f"<< /Type /Page /Parent {pages_obj} 0 R /MediaBox [0 0 {W} {H}] "
        f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {stream} 0 R >>".encode()))
objs[catalog - 1] = f"<< /Type /Catalog /Pages {pages_obj} 0 R >>".encode()
objs[pages_obj - 1] = ("<< /Type /Pages /Kids [" + " ".join(f"{k} 0 R" for k in kids)
                       + f"] /Count {len(kids)} >>").encode()
info = add(b"<< /Title (A small field guide) >>")

out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
offsets = []
for number, body in enumerate(objs, start=1):
    offsets.append(len(out))
    out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
xref = len(out)
out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
out += (b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objs) + 1, catalog, info, xref))
open(sys.argv[1], "wb").write(out)
PY

# --- A short text note, for lexical and hybrid search. ---------------------
cat > "$out/notes.md" <<'MD'
# Notes on the demo pictures

The Mandelbrot set is a fractal: its boundary repeats itself at every zoom.
Colour bars and test cards were used to calibrate television screens.
Conway's Game of Life and rule 110 are cellular automata: simple rules, complex patterns.
MD
echo "demo corpus in $(pwd)/$out:"
ls -l "$out"

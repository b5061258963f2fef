#!/usr/bin/env python3
"""plot_log.py: loss curves from train's --log files, as one SVG (no plotting library needed).

    python3 dev/plot_log.py run_path.log run_learned.log -o loss.svg [--smooth 20] [--title T]

Each log is the key=value file train.c appends to (--log): an `event=step` line per step (step=,
loss=) and an `event=eval` line per evaluation (step=, val_loss=). A run's curve is labelled by the
attention type of its `event=model` line and the file name; the train loss is drawn thin (its moving average over
--smooth steps thick), the val loss as dots. The y axis is logarithmic. Several logs share the axes,
so runs of different attention types compare directly.
"""
import argparse
import math
import os
import sys

COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf', '#7f7f7f']
W, H, LEFT, RIGHT, TOP, BOTTOM = 800, 500, 70, 170, 40, 50


def parse(path):
    """-> (label, [(step, loss)], [(step, val_loss)]) of one log file"""
    label, train, val = os.path.basename(path), [], []
    with open(path) as f:
        for line in f:
            kv = dict(p.split('=', 1) for p in line.split() if '=' in p)
            if kv.get('event') == 'model' and 'attn' in kv:
                label = f"{kv['attn']} ({os.path.basename(path)})"
            if kv.get('event') == 'step' and 'loss' in kv:
                train.append((int(kv['step']), float(kv['loss'])))
            elif kv.get('event') == 'eval' and 'val_loss' in kv:
                val.append((int(kv['step']), float(kv['val_loss'])))
    return label, train, val


def smooth(points, n):
    out, acc = [], []
    for s, y in points:
        acc.append(y)
        if len(acc) > n:
            acc.pop(0)
        out.append((s, sum(acc) / len(acc)))
    return out


def svg(runs, title, n_smooth):
    pts = [p for _, tr, va in runs for p in tr + va if p[1] > 0]
    if not pts:
        sys.exit('plot_log.py: no positive losses in the logs (no event=step or event=eval lines?)')
    x0, x1 = 0, max(s for s, _ in pts) or 1
    y0, y1 = math.log10(min(y for _, y in pts)), math.log10(max(y for _, y in pts))
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    X = lambda s: LEFT + pw * (s - x0) / (x1 - x0)
    Y = lambda y: TOP + ph * (1 - (math.log10(y) - y0) / (y1 - y0))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{LEFT}" y="{TOP - 15}" font-size="14">{title}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>']
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        for m in (1, 2, 5):
            y = m * 10 ** e
            if y0 <= math.log10(y) <= y1:
                out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="#ddd"/>')
                out.append(f'<text x="{LEFT - 5}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    for i in range(6):
        s = x0 + (x1 - x0) * i / 5
        out.append(f'<text x="{X(s):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{s:.0f}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">step</text>')
    out.append(f'<text x="15" y="{TOP + ph / 2}" transform="rotate(-90 15 {TOP + ph / 2})" text-anchor="middle">loss</text>')
    for i, (label, tr, va) in enumerate(runs):
        c = COLORS[i % len(COLORS)]
        line = lambda p: ' '.join(f'{X(s):.1f},{Y(y):.1f}' for s, y in p if y > 0)
        if tr:
            out.append(f'<polyline points="{line(tr)}" fill="none" stroke="{c}" stroke-opacity="0.3" stroke-width="1"/>')
            out.append(f'<polyline points="{line(smooth(tr, n_smooth))}" fill="none" stroke="{c}" stroke-width="2"/>')
        for s, y in va:
            if y > 0:
                out.append(f'<circle cx="{X(s):.1f}" cy="{Y(y):.1f}" r="3" fill="{c}"/>')
        ly = TOP + 10 + 36 * i
        out.append(f'<line x1="{W - RIGHT + 10}" x2="{W - RIGHT + 30}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{W - RIGHT + 35}" y="{ly + 4}">{label[:24]}</text>')
        out.append(f'<text x="{W - RIGHT + 35}" y="{ly + 18}" fill="#555">train (line), val (dots)</text>')
    out.append('</svg>')
    return '\n'.join(out) + '\n'


def main():
    ap = argparse.ArgumentParser(description='loss curves of train --log files, as SVG')
    ap.add_argument('logs', nargs='+', help='files written by train --log')
    ap.add_argument('-o', '--out', default='loss.svg')
    ap.add_argument('--smooth', type=int, default=20, help='moving-average window of the train loss, in steps')
    ap.add_argument('--title', default='loss')
    a = ap.parse_args()
    runs = [parse(p) for p in a.logs]
    with open(a.out, 'w') as f:
        f.write(svg(runs, a.title, max(1, a.smooth)))
    for label, tr, va in runs:
        print(f'{label}: {len(tr)} steps, {len(va)} evaluations' + (f', last loss {tr[-1][1]:.4g}' if tr else ''))
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()

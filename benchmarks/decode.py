"""Image-loading throughput: fastai's default folder pipeline vs recipekit's reduced-scale JPEG decoding, side by side in one run.

    .venv/bin/python benchmarks/decode.py [--epochs 4] [--imagenette-limit 2000] [--data ../shared/data]

Measures images per second of iterating the *training* `DataLoader` only (validation is not timed), at 160 px, bs=64:
  fastai                   `ImageDataLoaders.from_folder(path, train='train', valid='val', item_tfms=Resize(160), bs=64)`
                           (from_df for the Imagenette subset) with fastai's default num_workers: full-size decode + Resize
  fastai (num_workers=0)   the same, decoded in this process, for a same-process comparison
  recipekit                `image_dataloaders(path, size=160, bs=64, check=False)`: JPEGs decoded at reduced scale with
                           PIL's draft mode and kept in a 1 GiB in-memory `DecodeCache`, then a random-resized crop and a
                           flip per item; num_workers=0
  recipekit (no cache)     the same with `cache_mb=0`: every pass decodes again
Data sets (read from ../shared/data, never copied): hymenoptera (245 training photos up to 2592x1944) and a seeded
random subset of `--imagenette-limit` Imagenette-160 training images (the same images for every pipeline, plus a
small validation subset only so that the loaders can be built). Each pipeline runs `--epochs` full passes over
`dls.train` with no warm-up pass; images are counted as the sum of batch sizes (the train loaders drop the last
partial batch). The table reports the first pass (cold: every image decoded), the mean of the later passes, and
images over time for all passes together, which is what a training run of `--epochs` epochs sees; the speed-up is
that last rate over fastai's default on the same data. Torch's thread count is left at its default.
"""
import warnings
warnings.filterwarnings('ignore', category=FutureWarning)
import argparse, os, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from fastai.vision.all import ImageDataLoaders, Resize
from recipekit.data import image_dataloaders

DATA = Path(__file__).resolve().parents[1].parent/'shared'/'data'
SIZE, BS = 160, 64

def time_passes(dl, epochs):
    "(images, seconds) of each of `epochs` full passes over `dl`, and the shape of the first batch"
    passes, shape = [], None
    for _ in range(epochs):
        n, t = 0, time.perf_counter()
        for x, y in dl:
            if shape is None: shape = tuple(x.shape)
            n += len(x)
        passes.append((n, time.perf_counter() - t))
    return passes, shape

def imagenette_subset(root:Path, limit:int, seed:int=0) -> pd.DataFrame:
    "Seeded random subset of `limit` training rows (plus limit//10 validation rows), columns path (relative to `root`), label, is_valid"
    df = pd.read_csv(root/'noisy_imagenette.csv')
    df = df.rename(columns={'noisy_labels_0': 'label'})[['path', 'label', 'is_valid']]
    rng = np.random.default_rng(seed)
    tr, va = df[~df.is_valid], df[df.is_valid]
    sub = pd.concat([tr.iloc[rng.choice(len(tr), min(limit, len(tr)), replace=False)],
                     va.iloc[rng.choice(len(va), min(max(limit//10, BS), len(va)), replace=False)]], ignore_index=True)
    return sub

def pipelines(root:Path, df:pd.DataFrame|None, csv:Path|None):
    "(pipeline name, function building its DataLoaders) for one data set; `df`/`csv` are the Imagenette subset"
    def fastai_dls(**kw):
        if df is None: return ImageDataLoaders.from_folder(root, train='train', valid='val', item_tfms=Resize(SIZE), bs=BS, **kw)
        return ImageDataLoaders.from_df(df, path=root, fn_col='path', label_col='label', valid_col='is_valid',
                                        item_tfms=Resize(SIZE), bs=BS, **kw)
    return [('fastai', fastai_dls), ('fastai (num_workers=0)', lambda: fastai_dls(num_workers=0)),
            ('recipekit', lambda: image_dataloaders(root if csv is None else csv, size=SIZE, bs=BS, check=False)),
            ('recipekit (no cache)', lambda: image_dataloaders(root if csv is None else csv, size=SIZE, bs=BS, check=False, cache_mb=0))]

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=4, help='timed full passes over each training DataLoader (at least 2)')
    p.add_argument('--imagenette-limit', type=int, default=2000, help='training images in the seeded Imagenette subset')
    p.add_argument('--data', type=Path, default=DATA, help='folder holding hymenoptera/ and imagenette-160/')
    a = p.parse_args()
    if a.epochs < 2: p.error('--epochs must be at least 2: the first pass is reported apart from the later ones')
    hym, imn = a.data/'hymenoptera', a.data/'imagenette-160'
    for d in (hym, imn/'noisy_imagenette.csv'):
        if not d.exists(): raise SystemExit(f"{d} not found: this benchmark needs the shared data sets (see {a.data/'README.md'}), or pass --data.")
    rows, workers, bad = [], None, []
    with tempfile.TemporaryDirectory() as tmp:
        sub = imagenette_subset(imn, a.imagenette_limit)
        csv = Path(tmp)/'imagenette_subset.csv'
        sub.assign(path=[str(imn/p) for p in sub.path]).to_csv(csv, index=False)  # absolute paths: the CSV sits in tmp
        for data, root, df, c in [('hymenoptera', hym, None, None), (f'imagenette-160 ({a.imagenette_limit} train)', imn, sub, csv)]:
            base = None
            for name, make in pipelines(root, df, c):
                dls = make()
                if name == 'fastai': workers = dls.train.fake_l.num_workers  # `dl.num_workers` is the per-worker share (1)
                passes, shape = time_passes(dls.train, a.epochs)
                if shape != (BS, 3, SIZE, SIZE): bad.append(f"{data} / {name}: first batch {shape}, expected {(BS, 3, SIZE, SIZE)}")
                first = passes[0][0]/passes[0][1]
                later = float(np.mean([n/t for n, t in passes[1:]]))
                total = sum(n for n, _ in passes)/sum(t for _, t in passes)
                base = base or total
                rows.append((data, name, first, later, total, total/base))
    print(f'| data | pipeline | first pass, images/s | later passes, images/s | all {a.epochs} passes, images/s | speed-up vs fastai default |')
    print('|---|---|---:|---:|---:|---:|')
    for d, n, f, l, t, s in rows: print(f'| {d} | {n} | {f:.0f} | {l:.0f} | {t:.0f} | {s:.2f}x |')
    print(f"\nCPUs: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, fastai default num_workers: {workers}, "
          f"{a.epochs} timed passes over dls.train, {SIZE} px, bs={BS}")
    print('first batch shape: ' + ('; '.join(bad) if bad else f'all {(BS, 3, SIZE, SIZE)}'))

if __name__ == '__main__': main()

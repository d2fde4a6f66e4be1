"""fastai's `aug_transforms` default vs every recipekit augmentation preset, random init, side by side in one run.

    .venv/bin/python benchmarks/augment_imagenette.py [--size 64] [--epochs 5] [--arms fastai none crop flip ...]

Every arm trains the same timm ResNet-18 from the same random init (`--seed`, default 0) on Imagenette-160's
9,469 training photos (clean labels) for the same epochs with `fit_one_cycle`, bf16 autocast on CPU (recipekit's
`Precision` callback, the same for all arms), ImageNet normalization, and is measured on the 3,925 validation photos.
Only the data pipeline differs:
  fastai    `ImageDataLoaders`-style DataBlock, `item_tfms=Resize(size)`, `batch_tfms=aug_transforms()` (flip, rotate,
            zoom, warp, lighting), fastai's default worker processes
  <preset>  `image_dataloaders(..., augment=preset)`; the `mix` preset also gets its `MixUpCutMix` callback
It prints validation accuracy after each epoch and the wall time per epoch (training + validation).
"""
import argparse, time, warnings
from pathlib import Path
import numpy as np, timm, torch
from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, ColReader, ColSplitter, Resize, aug_transforms,
                               Normalize, imagenet_stats, Learner, accuracy, set_seed, Callback)
from recipekit.data import image_dataloaders, read_source
from recipekit.augment import AUG_PRESETS, aug_preset, choose_augment
from recipekit.learner import Precision

CSV = Path(__file__).resolve().parents[2]/'shared'/'data'/'imagenette-160'/'noisy_imagenette.csv'

class EpochClock(Callback):
    "Wall time and validation accuracy after every epoch"
    order = 90
    def before_fit(self): self.rows, self.t = [], time.time()
    def after_epoch(self):
        now = time.time(); self.rows.append((now - self.t, float(self.recorder.values[-1][2]))); self.t = now

def fastai_dls(src, size, bs):
    df = src.df.assign(is_valid=src.df.is_valid.astype(bool))
    db = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ColReader('path'), get_y=ColReader('label'),
                   splitter=ColSplitter('is_valid'), item_tfms=Resize(size),
                   batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)])
    return db.dataloaders(df, bs=bs)

def run_arm(arm, src, a):
    set_seed(a.seed, reproducible=True)
    if arm == 'fastai': dls, cbs = fastai_dls(src, a.size, a.bs), []
    else:
        dls = image_dataloaders(src, size=a.size, bs=a.bs, augment=arm, check=False, seed=a.seed,
                                batch_tfms=[Normalize.from_stats(*imagenet_stats)])
        cbs = [m] if (m := aug_preset(arm).mixer()) else []
    set_seed(a.seed, reproducible=True)
    model = timm.create_model(a.arch, num_classes=dls.c)
    clock = EpochClock()
    learn = Learner(dls, model, metrics=accuracy, cbs=[Precision('bf16'), clock] + cbs)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(a.epochs, a.lr)
    return clock.rows

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--arch', default='resnet18')
    p.add_argument('--seed', type=int, default=0, help='seed of the init, the data order and the augmentation')
    p.add_argument('--limit', type=int, help='use only this many images per split (a quick trial)')
    p.add_argument('--arms', nargs='+', default=['fastai', *AUG_PRESETS])
    a = p.parse_args()
    if not CSV.exists():
        raise SystemExit(f"Imagenette not found at {CSV}: this benchmark needs ../shared/data (see its README).")
    warnings.filterwarnings('ignore')
    torch.set_num_threads(2)
    src = read_source(CSV, label_col='noisy_labels_0')
    if a.limit:
        df = src.df.sample(frac=1, random_state=0)
        src.df = df.groupby(df.is_valid.astype(bool)).head(a.limit).reset_index(drop=True)
    n_train = int((~src.df.is_valid.astype(bool)).sum())
    default, why = choose_augment(n_train/len(src.classes), a.epochs)
    print(f"{a.arch}, random init (seed {a.seed}), {a.size} px, {a.epochs} epochs, bs {a.bs}, lr {a.lr}; "
          f"{n_train} train / "
          f"{int(src.df.is_valid.astype(bool).sum())} valid images; recipekit's default for this budget: {default!r}",
          flush=True)
    res = {}
    for arm in a.arms:
        rows = run_arm(arm, src, a)
        res[arm] = rows
        print(f"arm {arm:<8} acc by epoch {' '.join(f'{r[1]:.3f}' for r in rows)}  "
              f"s/epoch {np.mean([r[0] for r in rows]):.1f}", flush=True)
    base = np.mean([r[0] for r in res['fastai']]) if 'fastai' in res else None
    print(f"\n| arm | final accuracy | s/epoch | time vs fastai |\n|---|---|---|---|")
    for arm, rows in res.items():
        t = np.mean([r[0] for r in rows])
        name = f"{arm} (default)" if arm == default else arm
        print(f"| {name} | {rows[-1][1]:.1%} | {t:.1f} | {f'{t/base:.2f}x' if base else '-'} |")

if __name__ == '__main__': main()

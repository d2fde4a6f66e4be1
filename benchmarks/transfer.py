"""Transfer strategies side by side on lite0: feature extraction, partial and full fine-tuning, gradual unfreezing,
the chooser's pick and fastai's `vision_learner(...).fine_tune(3)`, on hymenoptera and a 10-images-per-class subset
of Imagenette-160, in one run. It also times one epoch of head training on cached features against fastai's frozen
`fit_one_cycle` on the same timm head.

    .venv/bin/python benchmarks/transfer.py [--data hymenoptera imagenette10] [--seeds 0] [--arms ...]

Every arm uses tf_efficientnet_lite0 at 160 px, bs 32, ImageNet weights from the offline weight package, and the
validation set of the data (hymenoptera: the 153 `val` photos; Imagenette: all 3,925 `val` photos). Wall time is
measured from building the DataLoaders to the final validation; the chooser's arm includes its linear probe.
"""
import argparse, os, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch
from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, Normalize, vision_learner, Learner, accuracy,
                               set_seed, CrossEntropyLossFlat)
from recipekit.weights import create_backbone, find_weights, load_weights_file, match_state_dict
from recipekit.data import image_dataloaders, read_source, ImageSource
from recipekit.learner import recipe_learner
from recipekit.recipe import Recipe, choose_recipe
from recipekit.transfer import TimmSplitter, probe_backbones, transfer_plan, cache_features

SHARED = Path(__file__).resolve().parents[2]/'shared'/'data'
ARCH, SIZE, BS = 'tf_efficientnet_lite0', 160, 32
NORM = {'features': 'frozen', 'partial': 'group', 'gradual': 'group', 'full': 'train'}

def source(name, seed=0):
    "ImageSource of a benchmark data set: hymenoptera as it is, or 10 seeded training images per Imagenette class"
    if name == 'hymenoptera': return read_source(SHARED/'hymenoptera')
    root = SHARED/'imagenette-160'
    df = pd.read_csv(root/'noisy_imagenette.csv')
    df = pd.DataFrame(dict(path=[str(root/p) for p in df.path], label=df.noisy_labels_0, is_valid=df.is_valid))
    train = df[~df.is_valid].groupby('label').sample(n=10, random_state=seed)
    return ImageSource(pd.concat([train, df[df.is_valid]]).reset_index(drop=True), 'csv', root)

def lite0_body_weights(model):
    "Load lite0's ImageNet weights into the timm body of a fastai `vision_learner` model"
    full = create_backbone(ARCH, pretrained=False)
    full.load_state_dict(match_state_dict(load_weights_file(find_weights(ARCH).path), full))
    model.load_state_dict({k: v for k, v in full.state_dict().items() if k in model.state_dict()})

def fastai_dls(src, seed):
    "fastai's own pipeline: `Resize`, `aug_transforms` and the lite weights' statistics"
    df = pd.DataFrame(dict(path=[os.path.relpath(p, src.root) for p in src.df.path], label=src.df.label,
                           is_valid=src.df.is_valid.astype(bool)))
    return ImageDataLoaders.from_df(df, path=src.root, fn_col='path', label_col='label', valid_col='is_valid', bs=BS,
                                    seed=seed,
                                    item_tfms=Resize(SIZE),
                                    batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5]*3, [0.5]*3)])

def fastai_arm(src, seed):
    set_seed(seed, reproducible=True)
    learn = vision_learner(fastai_dls(src, seed), ARCH, pretrained=False, metrics=accuracy)
    lite0_body_weights(learn.model[0].model)
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(3)
    with learn.no_bar(): return float(learn.validate()[1]), 'fine_tune(3), lr 2e-3, body 2e-5..2e-3'

def recipe_arm(src, seed, recipe):
    dls = image_dataloaders(src, size=SIZE, bs=BS, seed=seed, augment=recipe.augment, check=False)
    learn = recipe_learner(dls, recipe=recipe.replace(seed=seed))
    with learn.no_bar(), learn.no_logging(): learn.fit_recipe()
    with learn.no_bar(): return float(learn.validate()[1]), learn

def fixed_recipe(strategy, per_class):
    return Recipe(arch=ARCH, size=SIZE, bs=BS, strategy=strategy, norm_policy=NORM[strategy], augment='flip',
                  **transfer_plan(strategy, per_class))

def describe(r):
    stages = f"{r.freeze_epochs} head" + (f" + {r.epochs} body" if r.epochs else '')
    return f"{r.strategy}: {stages} epochs, lr {r.lr:g}" + (f", {r.views} cached views" if r.strategy == 'features' else '')

def head_epoch_speed(src, seed, epochs=2):
    "Seconds per epoch: fastai frozen `fit_one_cycle` on lite0 with its timm classifier vs `fit_head` on the cache"
    set_seed(seed)
    model = create_backbone(ARCH, pretrained=True, n_out=len(src.classes))
    learn = Learner(fastai_dls(src, seed), model, loss_func=CrossEntropyLossFlat(), splitter=TimmSplitter(),
                    metrics=accuracy, train_bn=False)
    learn.freeze()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 1e-3)  # warm-up epoch, not timed
        t = time.time(); learn.fit_one_cycle(epochs, 1e-3); fastai_s = (time.time() - t)/epochs
    dls = image_dataloaders(src, size=SIZE, bs=BS, seed=seed, augment='flip', check=False)
    rl = recipe_learner(dls, recipe=fixed_recipe('features', 10))
    t = time.time(); cache = cache_features(rl, views=4); build = time.time() - t
    with rl.no_bar(), rl.no_logging():
        rl.fit_head(1, 3e-3, cache=cache)
        t = time.time(); rl.fit_head(epochs*10, 3e-3, cache=cache); cached_s = (time.time() - t)/(epochs*10)
    return fastai_s, cached_s, build

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', nargs='+', default=['hymenoptera', 'imagenette10'])
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--arms', nargs='+', default=['fastai', 'features', 'partial', 'full', 'gradual', 'chooser', 'speed'])
    a = p.parse_args()
    for d in ('hymenoptera', 'imagenette-160'):
        if not (SHARED/d).is_dir(): raise SystemExit(f"{d} not found under {SHARED}: this benchmark needs ../shared/data.")
    warnings.filterwarnings('ignore')
    print(f"torch threads {torch.get_num_threads()}, {ARCH} at {SIZE}px, bs {BS}", flush=True)
    rows = []
    for name in a.data:
        src = source(name)
        n_train, n_classes = int((~src.df.is_valid.astype(bool)).sum()), len(src.classes)
        per_class = n_train / n_classes
        print(f"\n{name}: {n_train} train / {int(src.df.is_valid.sum())} valid images, {n_classes} classes", flush=True)
        for seed in a.seeds:
            for arm in a.arms:
                t = time.time()
                if arm == 'speed':
                    f, c, b = head_epoch_speed(src, seed)
                    print(f"speed  fastai frozen epoch {f:.2f}s  cached head epoch {c*1000:.1f}ms  ({f/c:.0f}x)  "
                          f"cache built in {b:.1f}s", flush=True)
                    rows.append(dict(data=name, seed=seed, arm='speed', fastai_epoch_s=f, cached_epoch_s=c, build_s=b))
                    continue
                if arm == 'fastai': acc, what = fastai_arm(src, seed)
                elif arm == 'chooser':
                    probes = probe_backbones(src, [(ARCH, SIZE)], seed=seed, bs=BS, check=False)
                    r = choose_recipe(n_train, n_classes, probes=probes, n_valid=int(src.df.is_valid.sum()), bs=BS)
                    acc, _ = recipe_arm(src, seed, r)
                    what = describe(r) + f" (probe {probes.probe[0]*100:.1f}%)"
                    print(f"        chooser: {r.reasons[0]}", flush=True)
                else:
                    r = fixed_recipe(arm, per_class); acc, _ = recipe_arm(src, seed, r); what = describe(r)
                dt = time.time() - t
                rows.append(dict(data=name, seed=seed, arm=arm, accuracy=acc, wall_s=dt, what=what))
                print(f"seed {seed}  {arm:9s} accuracy {acc*100:5.1f}%  wall {dt:5.0f}s  {what}", flush=True)
    df = pd.DataFrame(rows)
    out = Path(__file__).with_suffix('.csv'); df.to_csv(out, index=False)
    acc = df[df.arm != 'speed']
    if len(acc):
        print('\n' + acc.groupby(['data', 'arm'], sort=False)[['accuracy', 'wall_s']].mean().to_string())
    print(f"\nrows in {out}")

if __name__ == '__main__': main()

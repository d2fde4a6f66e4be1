"""Plain fastai vs recipekit fine-tuning on hymenoptera (ants vs bees), same weights, side by side in one run.

    .venv/bin/python benchmarks/fine_tune_hymenoptera.py [--seeds 0 1 2] [--arms fastai fastai-same recipekit]

Arms (each run once per seed, wall time measured from the DataLoaders to the final validation):
  fastai       the issue's baseline: `vision_learner` + `fine_tune(3)`, lite0, 160 px, `aug_transforms`, 0.5/0.5 stats
  fastai-same  `vision_learner` + `fine_tune(3)` with recipekit's backbone and image size
  recipekit    `image_dataloaders` + `recipe_learner` + `fit_recipe` with the recipe `choose_recipe` picks
Weights for every arm come from the same offline weight packages.
"""
import argparse, time, warnings
from pathlib import Path
import torch
from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, Normalize, vision_learner, accuracy, set_seed)
from recipekit.weights import create_backbone, find_weights, load_weights_file, match_state_dict
from recipekit.data import image_dataloaders, read_source
from recipekit.learner import recipe_learner
from recipekit.recipe import choose_recipe

DATA = Path(__file__).resolve().parents[2]/'shared'/'data'/'hymenoptera'

def fastai_arm(arch, size, seed, epochs, freeze_epochs=1):
    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(DATA, train='train', valid='val', item_tfms=Resize(size), seed=seed,
                                       batch_tfms=[*aug_transforms(), Normalize.from_stats([0.5]*3, [0.5]*3)])
    learn = vision_learner(dls, arch, pretrained=False, metrics=accuracy)
    body = learn.model[0].model  # timm model without its classifier
    sd = load_weights_file(find_weights(arch).path)
    full = create_backbone(arch, pretrained=False)
    full.load_state_dict(match_state_dict(sd, full))
    body.load_state_dict({k: v for k, v in full.state_dict().items() if k in body.state_dict()})
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(epochs, freeze_epochs=freeze_epochs)
    with learn.no_bar(): return learn.validate()[1]

def recipekit_arm(seed):
    src = read_source(DATA)
    recipe = choose_recipe((~src.df.is_valid.astype(bool)).sum(), len(src.classes), seed=seed)
    dls = image_dataloaders(src, size=recipe.size, bs=recipe.bs, seed=seed, min_scale=recipe.min_scale, augment=recipe.augment, crop_pct=recipe.crop_pct)
    learn = recipe_learner(dls, recipe=recipe)
    with learn.no_bar(), learn.no_logging(): learn.fit_recipe()
    with learn.no_bar(): return learn.validate()[1], recipe

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--arms', nargs='+', default=['fastai', 'fastai-same', 'recipekit'])
    a = p.parse_args()
    if not DATA.is_dir(): raise SystemExit(f"hymenoptera not found at {DATA}: this benchmark needs ../shared/data (see its README).")
    warnings.filterwarnings('ignore')
    recipe = choose_recipe(245, 2)
    rows = {}
    for seed in a.seeds:
        for arm in a.arms:
            t = time.time()
            if arm == 'fastai': acc = fastai_arm('tf_efficientnet_lite0', 160, seed, 3)
            elif arm == 'fastai-same': acc = fastai_arm(recipe.arch, recipe.size, seed, 3)
            elif arm == 'recipekit': acc, _ = recipekit_arm(seed)
            else: raise SystemExit(f"unknown arm {arm!r}: use fastai, fastai-same or recipekit")
            acc = float(acc); dt = time.time() - t
            rows.setdefault(arm, []).append((acc, dt))
            print(f"seed {seed}  {arm:12s} accuracy {acc*100:5.1f}%  wall {dt:5.0f} s", flush=True)
    print(f"\nrecipekit recipe: {recipe.arch} {recipe.size}px, strategy {recipe.strategy}, {recipe.freeze_epochs} head + {recipe.epochs} body epochs, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'arm':12s} {'mean acc':>9s} {'min acc':>8s} {'mean wall':>10s} {'max wall':>9s}")
    for arm, r in rows.items():
        accs, dts = [x for x, _ in r], [d for _, d in r]
        print(f"{arm:12s} {100*sum(accs)/len(accs):8.1f}% {100*min(accs):7.1f}% {sum(dts)/len(dts):9.0f}s {max(dts):8.0f}s")

if __name__ == '__main__': main()

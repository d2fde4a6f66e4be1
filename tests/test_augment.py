import numpy as np, pandas as pd, pytest, torch
from torch import nn
from PIL import Image
from torchvision.transforms import v2
import torchvision.transforms.functional as TF
from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, parent_label, RandomSplitter, get_image_files,
                               Normalize, PILImage, TensorCategory, set_seed)
from recipekit.augment import (ResizedCrop, TorchvisionAug, RandAugment, TrivialAugment, AUG_PRESETS, aug_preset,
                               choose_augment, augment_table, label_check, label_checks)
from recipekit.data import image_dataloaders, digits_folder
from recipekit.learner import recipe_learner
from recipekit.mix import MixUpCutMix
from recipekit.recipe import Recipe
from recipekit.weights import create_backbone
from conftest import make_colours, shared_data

def halves(root, n=8, size=32):
    "Class `left`: the left half bright; class `right`: the right half bright"
    for c in ('left', 'right'):
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.zeros((size, size, 3), np.uint8)
            v = 255 - 20*i  # distinct images, so that they are not taken for copies and kept on one side of the split
            if c == 'left': a[:, :size//2] = v
            else: a[:, size//2:] = v
            Image.fromarray(a).save(root/c/f'{i}.png')
    return root

class HalfModel(nn.Module):
    "Predicts `left` when the left half is brighter, `right` when the right half is; ties go to `left`"
    def forward(self, x):
        d = x[..., :x.shape[-1]//2].mean((1, 2, 3)) - x[..., x.shape[-1]//2:].mean((1, 2, 3))
        return torch.stack([d, -d], 1)

# --- typed transforms: images only, training only

@pytest.mark.parametrize('tfm', [RandAugment(), TrivialAugment(), TorchvisionAug(v2.RandomInvert(p=1.))],
                         ids=['randaug', 'trivial', 'invert'])
def test_torchvision_transform_touches_training_images_only(tfm):
    a = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    img, y = PILImage.create(a), TensorCategory(1)
    torch.manual_seed(0)
    train = [tfm((img, y), split_idx=0) for _ in range(6)]
    assert all(o[1] is y for o in train) and all(isinstance(o[0], PILImage) for o in train)
    assert any(not np.array_equal(np.asarray(o[0]), a) for o in train)
    assert np.array_equal(np.asarray(tfm((img, y), split_idx=1)[0]), a)

def test_raw_torchvision_transform_is_the_trap(tmp_path):
    # ANCHORS trap 6: a raw v2 transform in item_tfms also gets the label, and runs on validation
    make_colours(tmp_path/'c', n=4)
    def block(*tfms):
        return DataBlock((ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                         splitter=RandomSplitter(seed=0), item_tfms=[ResizedCrop(16), *tfms]
                         ).dataloaders(tmp_path/'c', bs=2)
    with pytest.raises(TypeError, match='at least two dimensions'): block(v2.RandAugment()).one_batch()
    raw = block(v2.RandomInvert(p=1.))
    assert raw.one_batch()[1].min() > 1                       # the labels were "inverted" too
    plain, ours = block(), block(TorchvisionAug(v2.RandomInvert(p=1.)))
    x, y = ours.one_batch()
    assert set(y.tolist()) <= {0, 1} and x.shape == (2, 3, 16, 16)
    assert torch.equal(ours.valid.one_batch()[0], plain.valid.one_batch()[0])
    assert not torch.equal(raw.valid.one_batch()[0], plain.valid.one_batch()[0])

def test_bad_transform_arguments():
    with pytest.raises(ValueError, match='`magnitude` must be an int in \\[0, 31\\)'): RandAugment(magnitude=31)
    with pytest.raises(ValueError, match='`num_ops` must be an int >= 1'): RandAugment(num_ops=0)
    with pytest.raises(TypeError, match='`tfm` must be a torchvision transform'): TorchvisionAug('randaug')

# --- presets

@pytest.mark.parametrize('name,types,flip,random_crop,mixer', [
    ('none', ['ResizedCrop'], False, False, False), ('crop', ['ResizedCrop'], False, True, False),
    ('flip', ['ResizedCrop'], True, True, False), ('trivial', ['ResizedCrop', 'TrivialAugment'], True, True, False),
    ('randaug', ['ResizedCrop', 'RandAugment'], True, True, False),
    ('mix', ['ResizedCrop', 'RandAugment'], True, True, True)])
def test_presets_turn_on_what_they_say(name, types, flip, random_crop, mixer):
    p = aug_preset(name)
    tfms = p.item_tfms(64, min_scale=0.5, crop_pct=0.875)
    assert [type(t).__name__ for t in tfms] == types
    assert (tfms[0].flip, tfms[0].random_crop, tfms[0].min_scale, tfms[0].crop_pct) == (flip, random_crop, 0.5, 0.875)
    assert isinstance(p.mixer(), MixUpCutMix) == mixer and p.what

def test_unknown_preset_suggests_the_name(tmp_path):
    with pytest.raises(ValueError, match="preset 'trivialaugment' \\(did you mean 'trivial'\\?\\)"):
        image_dataloaders(make_colours(tmp_path/'c'), size=16, augment='trivialaugment')
    with pytest.raises(ValueError, match='Presets, weakest first: none, crop, flip'): Recipe(augment='heavy')

@pytest.mark.parametrize('per_class,epochs,name', [(947, 5, 'flip'), (947, 14, 'flip'), (947, 15, 'trivial'),
                                                   (947, 39, 'trivial'), (947, 40, 'randaug'), (947, 100, 'mix'),
                                                   (50, 7, 'flip'), (50, 8, 'trivial'), (50, 20, 'randaug'),
                                                   (50, 50, 'mix')])
def test_choose_augment_by_budget_and_data(per_class, epochs, name):
    assert choose_augment(per_class, epochs)[0] == name
    assert choose_augment(per_class, epochs, flips=False)[0] == 'crop'

def test_short_runs_never_get_mixing():
    assert all(not aug_preset(choose_augment(n, 5)[0]).mix for n in (5, 50, 500, 5000))

# --- the learner follows the data loaders' preset and adds the mixer

def test_mix_preset_adds_the_mixer_and_validation_is_bit_identical_across_seeds(tmp_path):
    dls = image_dataloaders(digits_folder(tmp_path/'d'), size=32, bs=64, augment='mix')
    learn = recipe_learner(dls, 'tf_efficientnet_lite0', pretrained=False)
    assert learn.recipe.augment == 'mix' and sum(isinstance(c, MixUpCutMix) for c in learn.cbs) == 1
    preds, trains = [], []
    for seed in (0, 1):
        set_seed(seed)
        trains.append(dls.train.one_batch()[0].clone())
        with learn.no_bar(): preds.append(learn.get_preds()[0])
    assert torch.equal(preds[0], preds[1])          # validation: same pixels, same predictions, bit for bit
    assert not torch.equal(trains[0], trains[1])    # training batches do change with the seed

def test_recipe_mismatch_warns_and_follows_the_data(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path/'c'), size=16, augment='flip')
    with pytest.warns(UserWarning, match="asks for augment='mix', but the DataLoaders were built with augment='flip'"):
        learn = recipe_learner(dls, 'tf_efficientnet_lite0', recipe=Recipe(augment='mix'), pretrained=False)
    assert learn.recipe.augment == 'flip' and not any(isinstance(c, MixUpCutMix) for c in learn.cbs)

# --- what a pipeline applies

def test_augment_table(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path/'c'), size=16, augment='mix', min_scale=0.5)
    learn = recipe_learner(dls, 'tf_efficientnet_lite0', pretrained=False)
    t = augment_table(learn)
    assert list(t.tfm) == ['ResizedCrop', 'RandAugment', 'ToTensor', 'IntToFloatTensor', 'Normalize', 'MixUpCutMix']
    crop = t.iloc[0]
    assert crop.train == 'random-resized crop to 16 px, area 50%-100%, ratio 0.75-1.33, horizontal flip p=0.5'
    assert crop.valid == 'resize short side to 16 px, center crop 16'
    assert t.iloc[1].train.startswith('RandAugment(interpolation=InterpolationMode.BILINEAR, num_ops=2, magnitude=9')
    assert t.iloc[1].valid == '-' and t.iloc[5].valid == '-' and 'off_epochs=0.1' in t.iloc[5].train
    assert list(augment_table(dls).tfm) == ['ResizedCrop', 'RandAugment', 'ToTensor', 'IntToFloatTensor', 'Normalize']
    with pytest.raises(TypeError, match='must be fastai DataLoaders or a Learner'): augment_table('dls')

# --- the label check

def test_label_check_by_hand(tmp_path):
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    lc = label_check(dls, HalfModel(), tfms=['hflip', 'vflip', 'rot90', 'rot180'])
    t = lc.table.set_index('tfm')
    assert t.loc['none', 'accuracy'] == 1.0 and t.loc['none', 'n'] == 8
    assert (t.loc['hflip', 'changed'], t.loc['hflip', 'accuracy']) == (1.0, 0.0)   # mirror swaps the classes
    assert (t.loc['vflip', 'changed'], t.loc['vflip', 'accuracy']) == (0.0, 1.0)   # top-bottom keeps them
    assert (t.loc['rot90', 'changed'], t.loc['rot90', 'accuracy']) == (0.5, 0.5)   # bright bottom: a tie, 'left'
    assert t.loc['hflip', 'top_change'] in ('left -> right (4 of 4)', 'right -> left (4 of 4)')
    assert lc.flagged == ['hflip', 'rot90', 'rot180'] and lc.mode == 'model'
    assert 'FLAGGED' in lc.summary().splitlines()[1] and 'FLAGGED' not in lc.summary().splitlines()[2]

def test_label_check_show_grid(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    lc = label_check(dls, HalfModel(), tfms=['hflip', 'vflip'])
    fig = lc.show()                       # the most damaging transform by default
    assert len(fig.axes) == 16 and fig.axes[8].get_title().startswith('hflip\npred ')
    with pytest.raises(ValueError, match='changed no prediction'): lc.show('vflip')
    with pytest.raises(ValueError, match="No transform 'rot90'"): lc.show('rot90')

def test_label_check_bad_input(tmp_path):
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    with pytest.raises(ValueError, match="Unknown label checks \\['spin'\\]"):
        label_check(dls, HalfModel(), tfms=['spin'])
    with pytest.raises(TypeError, match='`model` must be a Learner or a torch module'): label_check(dls, 'resnet18')
    with pytest.raises(ValueError, match='`max_drop` must be in'): label_check(dls, HalfModel(), max_drop=5)
    three = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(ValueError, match='has 3 output\\(s\\) for 2 classes and is not a timm model'):
        label_check(dls, three)

def test_digits_probe_finds_six_into_nine(tmp_path):
    dls = image_dataloaders(digits_folder(tmp_path/'d'), size=64, augment='none',
                            batch_tfms=[Normalize.from_stats([0.5]*3, [0.5]*3)])
    lc = label_check(dls, create_backbone('tf_efficientnet_lite0'), tfms=['vflip', 'rot180'], n=400)
    t = lc.table.set_index('tfm')
    assert lc.mode == 'probe' and t.loc['none', 'accuracy'] > 0.85
    assert lc.flagged == ['vflip', 'rot180']
    assert t.loc['rot180', 'top_change'].startswith('6 -> 9') and t.loc['vflip', 'top_change'].startswith('6 -> 9')

def test_hymenoptera_hflip_is_not_flagged():
    src = shared_data('hymenoptera')
    dls = image_dataloaders(src, size=160, augment='none', batch_tfms=[Normalize.from_stats([0.5]*3, [0.5]*3)])
    lc = label_check(dls, create_backbone('tf_efficientnet_lite0'), tfms=['hflip', 'vflip'])
    t = lc.table.set_index('tfm')
    assert 'hflip' not in lc.flagged and t.accuracy['none'] > 0.85
    assert t.changed['vflip'] > 3*t.changed['hflip']  # the check does see an upside-down insect (5.9% vs 0.7%)

@pytest.mark.parametrize('f,msg', [(lambda x: x[:, :16], r'input\'s shape \(3, 32, 32\), got Tensor \(3, 16, 32\)'),
                                   (lambda x: x.float(), 'torch.float32'),
                                   (lambda x: x.numpy(), 'got ndarray')])
def test_label_check_own_transform_must_keep_the_image(tmp_path, f, msg):
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    with pytest.raises(ValueError, match=msg): label_check(dls, HalfModel(), tfms={'mine': f})
    lc = label_check(dls, HalfModel(), tfms={'invert': lambda x: 255 - x})  # own transforms that keep the image
    assert lc.table.set_index('tfm').loc['invert', 'accuracy'] == 0.0

def test_label_check_n(tmp_path):
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    assert label_check(dls, HalfModel(), tfms=['vflip'], n=3).table.n.tolist() == [3, 3]
    with pytest.raises(ValueError, match='`n` must be an int >= 1, got 0'): label_check(dls, HalfModel(), n=0)

@pytest.mark.parametrize('tfm', [RandAugment(), TrivialAugment(), ResizedCrop(16)], ids=['randaug', 'trivial', 'crop'])
def test_item_transforms_refuse_batch_tfms(tmp_path, tfm):
    with pytest.raises(TypeError, match='is an item transform.*Put it in `item_tfms`'):
        image_dataloaders(make_colours(tmp_path/'c'), size=16, augment='none', batch_tfms=tfm).one_batch()

@pytest.mark.parametrize('make,msg', [(lambda: ResizedCrop(0), '`size` must be a positive int'),
                                      (lambda: ResizedCrop(32.5), '`size` must be a positive int'),
                                      (lambda: ResizedCrop(32, ratio=(2, 1)), '`ratio` must be \\(low, high\\)'),
                                      (lambda: TrivialAugment(num_magnitude_bins=0), '`num_magnitude_bins` must be'),
                                      (lambda: RandAugment(num_magnitude_bins=1), '`num_magnitude_bins` must be')])
def test_transform_arguments_checked_early(make, msg):
    with pytest.raises(ValueError, match=msg): make()

@pytest.mark.parametrize('args,msg', [((0, 5), '`per_class` must be a positive number'),
                                      ((10, 0), '`epochs` must be an int >= 1'),
                                      ((10, 2.5), '`epochs` must be an int')])
def test_choose_augment_bad_input(args, msg):
    with pytest.raises(ValueError, match=msg): choose_augment(*args)

def test_label_check_warns_on_chance_and_few_images(tmp_path):
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    with pytest.warns(UserWarning, match='Only 8 validation images were checked'):
        label_check(dls, HalfModel(), tfms=['vflip'])
    class Coin(nn.Module):
        def forward(self, x): return torch.zeros(len(x), 2)  # always 'left': 50%, chance
    with pytest.warns(UserWarning, match='untransformed accuracy is 50.0%, not far above chance'):
        label_check(dls, Coin(), tfms=['vflip'])

def test_label_check_more_bad_input(tmp_path):
    dls = image_dataloaders(halves(tmp_path/'h'), size=32, augment='none', valid_pct=0.5)
    with pytest.raises(ValueError, match="'none' names the untransformed baseline"):
        label_check(dls, HalfModel(), tfms={'none': TF.hflip})
    with pytest.raises(TypeError, match="Label checks \\['x'\\] are not callable"):
        label_check(dls, HalfModel(), tfms={'x': 3})
    with pytest.raises(TypeError, match='Is the order `label_check\\(dls, model\\)`'): label_check(HalfModel(), dls)
    with pytest.raises(ValueError, match="Label check 'boom' failed on a uint8.*ZeroDivisionError"):
        label_check(dls, HalfModel(), tfms={'boom': lambda x: 1/0})
    lc = label_check(dls, HalfModel(), tfms=['hflip'])
    assert repr(lc) == lc.summary() and len(repr(lc)) < 300

def test_recipe_learner_records_what_the_data_loaders_do(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path/'c'), size=24, bs=4)
    learn = recipe_learner(dls, 'tf_efficientnet_lite0', pretrained=False, cbs=MixUpCutMix())  # one callback, no list
    assert (learn.recipe.size, learn.recipe.bs) == (24, 4) and sum(isinstance(c, MixUpCutMix) for c in learn.cbs) == 1

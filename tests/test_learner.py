import math, warnings, pytest, torch, timm
import numpy as np
from torch import nn
from fastai.vision.all import Normalize, CancelFitException, Callback
from recipekit.data import image_dataloaders
from recipekit.learner import recipe_learner, Precision, resolve_precision
from recipekit.transfer import timm_groups, bf16_supported
from recipekit.recipe import Recipe
from conftest import make_colours

TINY = Recipe(size=32, bs=4, freeze_epochs=1, epochs=1, arch='tf_efficientnet_lite0')

@pytest.fixture
def dls(tmp_path): return image_dataloaders(make_colours(tmp_path), size=32, bs=4)

@pytest.mark.parametrize('arch,coarse,n', [('resnet18', True, 6), ('resnet18', False, 10),
                                           ('tf_efficientnet_lite0', True, 9), ('vit_tiny_patch16_224', True, 14),
                                           ('convnext_atto', True, 6), ('convnext_atto', False, 14)])
def test_groups_from_group_matcher(arch, coarse, n):
    m = timm.create_model(arch, num_classes=3)
    g = timm_groups(m, coarse)
    assert len(g) == n
    assert set(g[-1]) >= {n for n, _ in m.get_classifier().named_parameters(prefix=m.pretrained_cfg['classifier'])}
    assert sorted(sum(g, [])) == sorted(n for n, _ in m.named_parameters())  # every parameter in exactly one group

def test_model_without_group_matcher():
    with pytest.raises(ValueError, match='has no `group_matcher`'): timm_groups(nn.Linear(2, 2))

def test_three_line_workflow_and_init_loss(dls):
    learn = recipe_learner(dls, 'tf_efficientnet_lite0', recipe=TINY)
    xb, yb = dls.one_batch()
    assert learn.loss_func(learn.model.eval()(xb), yb).item() == pytest.approx(math.log(2), abs=1e-6)
    assert len(learn.splitter(learn.model)) == 9  # vision_learner gives a timm model 2
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, freeze_epochs=1)
    assert len(learn.recorder.values) == 1

def test_normalize_uses_backbone_stats_and_warns_on_override(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path), size=32, bs=4,
                            batch_tfms=[Normalize.from_stats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with pytest.warns(UserWarning, match='expect mean=\\[0.5, 0.5, 0.5\\]'): recipe_learner(dls, recipe=TINY)
    norms = [t for t in dls.train.after_batch.fs if isinstance(t, Normalize)]
    assert (len(norms) == 1 and norms[0].mean.flatten().tolist() == [0.5]*3 and
            norms[0].std.flatten().tolist() == [0.5]*3)

def test_frozen_norm_stats_bit_identical_after_unfrozen_fit(dls):
    learn = recipe_learner(dls, recipe=TINY)
    bufs = {k: v.clone() for k, v in learn.model.state_dict().items() if 'running' in k}
    conv = learn.model.blocks[0][0].conv_dw.weight.clone()
    with learn.no_bar(), learn.no_logging(): learn.fit_recipe()  # 1 frozen + 1 unfrozen epoch
    for k, v in learn.model.state_dict().items():
        if 'running' in k: assert torch.equal(v, bufs[k]), k
    assert not torch.equal(learn.model.blocks[0][0].conv_dw.weight, conv)  # the body did train once unfrozen

def test_train_policy_moves_norm_stats(dls):
    learn = recipe_learner(dls, recipe=TINY.replace(norm_policy='train'))
    before = learn.model.bn1.running_mean.clone()
    with learn.no_bar(), learn.no_logging(): learn.fit_recipe()
    assert not torch.equal(before, learn.model.bn1.running_mean)

def test_freeze_really_freezes_body(dls):
    learn = recipe_learner(dls, recipe=TINY)
    w = learn.model.conv_stem.weight.clone(); h = learn.model.classifier.weight.clone()
    learn.freeze()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2)
    assert torch.equal(w, learn.model.conv_stem.weight) and not torch.equal(h, learn.model.classifier.weight)

def test_bf16_autocast_really_computes_in_bf16(dls):
    if not bf16_supported('cpu'): pytest.skip('this CPU has no native bf16')
    learn = recipe_learner(dls, recipe=TINY.replace(precision='bf16'))
    seen = []
    h = learn.model.conv_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    class Stop(Callback):
        def after_loss(self): seen.append(self.loss.dtype); raise CancelFitException()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=Stop())
    h.remove()
    assert seen == [torch.bfloat16, torch.float32]  # activations in bf16, loss in fp32
    assert learn.model.conv_stem.weight.dtype == torch.float32  # master weights stay fp32
    assert learn.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)

def test_fp32_stays_fp32(dls):
    learn = recipe_learner(dls, recipe=TINY.replace(precision='fp32'))
    seen = []
    learn.model.conv_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    class Stop(Callback):
        def after_pred(self): raise CancelFitException()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=Stop())
    assert seen == [torch.float32]

def test_precision_errors():
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA GPU"): resolve_precision('fp16', 'cpu')
    with pytest.raises(ValueError, match="Precision handles 'bf16' and 'fp32'"): Precision('fp16')
    assert resolve_precision('fp32', 'cpu') == 'fp32'

def test_autocast_closed_after_cancel(dls):
    learn = recipe_learner(dls, recipe=TINY.replace(precision='bf16'))
    class Boom(Callback):
        def after_pred(self): raise CancelFitException()
        order = 5  # before Precision leaves autocast
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=Boom())
    assert not torch.is_autocast_enabled('cpu')

def test_bad_arguments(dls):
    with pytest.raises(TypeError, match='`recipe` must be a recipekit Recipe'):
        recipe_learner(dls, recipe={'arch': 'x'})
    with pytest.raises(ValueError, match='Unknown architecture'): recipe_learner(dls, 'resnet_18')
    with pytest.raises(ValueError, match='No pretrained weights'): recipe_learner(dls, 'vit_huge_patch14_224')

def test_optimizer_keeps_frozen_groups_when_recreated(dls):
    learn = recipe_learner(dls, recipe=TINY)
    learn.freeze()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3, reset_opt=True)  # optimizer rebuilt while the body is frozen
    learn.unfreeze()
    in_opt = {id(o[0]) for o in learn.opt.all_params()}
    norm = {id(p) for m in learn.model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    every = {id(p) for p in learn.model.parameters()}
    assert in_opt == every - norm  # body convs are back; only the frozen norm layers stay out
    assert all(o[0].requires_grad for o in learn.opt.all_params())

def test_learner_exports(dls, tmp_path):
    learn = recipe_learner(dls, recipe=TINY)
    learn.export(tmp_path/'learn.pkl')
    assert (tmp_path/'learn.pkl').stat().st_size > 1_000_000

def test_random_init_normalizes_with_dataset_stats(tmp_path):
    from recipekit.audit import dataset_stats
    data = make_colours(tmp_path)
    dls = image_dataloaders(data, size=32, bs=4)
    learn = recipe_learner(dls, 'tf_efficientnet_lite0', pretrained=False,
                           recipe=Recipe(size=32, freeze_epochs=0, epochs=1))
    expected = dataset_stats(list(dls.train.items.path), size=64)
    np.testing.assert_allclose(learn.recipe.mean, expected[0])
    np.testing.assert_allclose(learn.recipe.std, expected[1])
    norm = [t for t in dls.train.after_batch.fs if isinstance(t, Normalize)]
    assert len(norm) == 1 and np.allclose(norm[0].mean.flatten().tolist(), expected[0])

def test_recipe_stats_override_pretrained_with_warning(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path), size=32, bs=4)
    with pytest.warns(UserWarning, match='instead of the statistics the pretrained weights'):
        learn = recipe_learner(dls, 'tf_efficientnet_lite0', recipe=Recipe(size=32, mean=[0.4]*3, std=[0.2]*3))
    assert learn.recipe.mean == [0.4]*3
    with pytest.raises(ValueError, match='Set `mean` and `std` together'): Recipe(mean=[0.4]*3)
    with pytest.raises(ValueError, match='three numbers each'): Recipe(mean=[0.4]*2, std=[0.2]*2)

def test_class_weighted_loss_through_recipe_learner(tmp_path):
    from fastai.losses import CrossEntropyLossFlat
    from recipekit.data import class_weights, class_counts
    dls = image_dataloaders(make_colours(tmp_path), size=32, bs=4)
    w = torch.tensor(class_weights(class_counts(dls)), dtype=torch.float32)
    learn = recipe_learner(dls, 'tf_efficientnet_lite0', recipe=Recipe(size=32),
                           loss_func=CrossEntropyLossFlat(weight=w))
    assert torch.equal(learn.loss_func.func.weight, w)
    xb, yb = dls.one_batch()
    # zero head: ln 2 whatever the weights
    assert abs(learn.loss_func(learn.model.eval()(xb), yb).item() - math.log(2)) < 1e-5

def test_shared_dataloaders_between_learners(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path), size=32, bs=4)
    recipe_learner(dls, 'tf_efficientnet_lite0', recipe=Recipe(size=32))  # 0.5 / 0.5
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        scratch = recipe_learner(dls, 'tf_efficientnet_lite0', pretrained=False,
                                 recipe=Recipe(size=32, freeze_epochs=0, epochs=1))
    assert scratch.recipe.mean != [0.5]*3  # the data's own statistics, not the earlier learner's
    msgs = [str(x.message) for x in w]
    assert any('for an earlier learner' in m for m in msgs) and not any('remove your Normalize' in m for m in msgs)

import json, math, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch, timm
from torch import nn
from fastai.vision.all import Learner, Callback, Normalize, CrossEntropyLossFlat, accuracy, DataLoaders, DataLoader
from recipekit.data import image_dataloaders
from recipekit.learner import recipe_learner, gradual_stages
from recipekit.recipe import Recipe, choose_recipe
from recipekit.runs import EpochLog
from recipekit.transfer import (timm_groups, TimmSplitter, layer_lrs, check_freeze, FreezeNorm, GradualUnfreeze,
                                cache_features, random_tfms, probe_score, probe_backbones, choose_transfer,
                                transfer_plan)
from conftest import make_colours

# body groups from timm's group_matcher (coarse, fine), plus the new classifier
@pytest.mark.parametrize('arch,coarse,fine', [('resnet18', 5, 9), ('tf_efficientnet_lite0', 8, 17),
                                              ('convnext_atto', 5, 13), ('vit_tiny_patch16_224', 13, 13)])
def test_group_counts_for_four_families(arch, coarse, fine):
    m = timm.create_model(arch, num_classes=3)
    for c, n in ((True, coarse), (False, fine)):
        g = timm_groups(m, c)
        assert len(g) == n + 1
        head = {k for k, _ in m.get_classifier().named_parameters(prefix=m.pretrained_cfg['classifier'])}
        assert set(g[-1]) == head  # the classifier alone is the last group
        assert sorted(sum(g, [])) == sorted(k for k, _ in m.named_parameters())  # each parameter exactly once

def test_groups_need_a_classifier():
    with pytest.raises(ValueError, match='no classifier parameters'): timm_groups(timm.create_model('resnet18', num_classes=0))

def _tiny(tmp_path, bs=16, augment='none', **kw):
    "resnet18 on 16 training and 4 validation images of two colours"
    dls = image_dataloaders(make_colours(tmp_path, n=10), size=32, bs=bs, augment=augment,
                            batch_tfms=[Normalize.from_stats([.5]*3, [.5]*3)])
    assert len(dls.train_ds) == 16
    torch.manual_seed(0)
    return Learner(dls, timm.create_model('resnet18', num_classes=2), loss_func=CrossEntropyLossFlat(),
                   metrics=accuracy, **{'splitter': TimmSplitter(), **kw})

def test_freeze_error_on_one_group_learner(tmp_path):
    learn = _tiny(tmp_path, splitter=lambda m: [list(m.parameters())])
    with pytest.raises(ValueError, match=r'would freeze nothing.*1 parameter group.*TimmSplitter'): learn.freeze()
    with pytest.raises(ValueError, match='would freeze nothing'): learn.fine_tune(1)  # fastai's fine_tune freezes first
    assert all(p.requires_grad for p in learn.model.parameters())  # nothing was changed
    learn.unfreeze()  # freeze_to(0) asks for nothing and gets nothing: allowed

def test_freeze_error_on_splitter_for_another_model(tmp_path):
    other = timm.create_model('resnet18', num_classes=2)
    learn = _tiny(tmp_path, splitter=lambda m: [list(other.parameters())[:-2], list(m.fc.parameters())])
    with pytest.raises(ValueError, match=r'does not fit this model: its groups hold 2 of the model.s 62'):
        learn.freeze()

def test_layer_decay_ratios_hold_under_any_fastai_schedule(tmp_path):
    learn = _tiny(tmp_path, bs=4)
    lrs = learn.group_lrs(1e-2, decay=0.5)
    np.testing.assert_allclose(lrs, [1e-2 * 0.5**k for k in (5, 4, 3, 2, 1, 0)])
    np.testing.assert_allclose(learn.group_lrs(slice(1e-4, 1e-2)), 1e-2 * (1e-2) ** np.linspace(1, 0, 6))
    class Trace(Callback):
        def before_fit(self): self.lrs = []
        def after_batch(self): self.lrs.append([h['lr'] for h in self.opt.hypers])
    t = Trace()
    with learn.no_bar(), learn.no_logging(): learn.fit_flat_cos(2, lrs, cbs=t)
    tr = np.array(t.lrs)
    assert tr[0, -1] == pytest.approx(1e-2) and tr[-1, -1] < 0.6e-2  # flat, then annealed
    np.testing.assert_allclose(tr / tr[:, -1:], np.tile(lrs / lrs[-1], (len(tr), 1)), rtol=1e-9)

def _norm_buffers(model): return {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}

def test_frozen_norm_epoch_leaves_buffers_bit_identical(tmp_path):
    learn = _tiny(tmp_path, bs=4, cbs=FreezeNorm(), train_bn=False)  # the 'group' policy
    learn.freeze()
    before, fc = _norm_buffers(learn.model), learn.model.fc.weight.clone()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    assert all(torch.equal(v, before[k]) for k, v in _norm_buffers(learn.model).items())
    assert not torch.equal(fc, learn.model.fc.weight)  # the head did train
    learn.unfreeze()  # now the norm layers train with their groups
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-3)
    assert not torch.equal(before['bn1.running_mean'], learn.model.bn1.running_mean)

def test_fastai_train_bn_moves_frozen_norm_stats(tmp_path):
    learn = _tiny(tmp_path, bs=4)  # fastai's default: train_bn=True, no FreezeNorm
    learn.freeze()
    before = _norm_buffers(learn.model)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    assert not torch.equal(before['bn1.running_mean'], learn.model.bn1.running_mean)

def _sched_cos(start, end, pos): return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2

def _one_cycle(lr, pos, pct, div, div_final=1e5):
    if pos < pct: return _sched_cos(lr/div, lr, pos/pct)
    return _sched_cos(lr, lr/div_final, (pos - pct)/(1 - pct))

def test_exact_per_group_lr_trace_through_gradual_unfreezing(tmp_path):
    learn = _tiny(tmp_path, bs=4, cbs=FreezeNorm(), train_bn=False)  # 16 images: 4 training batches per epoch
    class Trace(Callback):
        order, trace = 70, []  # after the `ParamScheduler` set this batch's rates
        def before_batch(self):
            if self.training:
                self.trace.append(([h['lr'] for h in self.opt.hypers], [all(p.requires_grad for p in g)
                                                                        for g in self.opt.param_lists]))
    learn.add_cb(Trace())
    with learn.no_bar(), learn.no_logging(): learn.fit_gradual([1, 2, 1], lr=1e-2, groups=2, decay=0.5)
    assert [s['groups'] for s in learn.unfreeze_log] == [1, 3, 5]
    expected, trainable = [], []
    for epochs, lr, pct, div, k in ((1, 1e-2, 0.99, 25., 1), (2, 5e-3, 0.3, 5., 3), (1, 5e-3, 0.3, 5., 5)):
        n = epochs * 4
        rates = [lr * 0.5**d for d in (5, 4, 3, 2, 1, 0)]
        for i in range(n):
            expected.append([_one_cycle(r, i/n, pct, div) for r in rates])
            trainable.append([False]*(6 - k) + [True]*k)
    got = np.array([lrs for lrs, _ in Trace.trace])
    assert got.shape == (16, 6)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-6)  # fastai steps its position in float32
    assert [t for _, t in Trace.trace] == trainable

def test_gradual_unfreeze_callback_and_epoch_log(tmp_path):
    learn = _tiny(tmp_path, bs=4, cbs=FreezeNorm(), train_bn=False)
    log = EpochLog()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(4, learn.group_lrs(1e-2, 0.5), cbs=[GradualUnfreeze(every=1, groups=2), log])
    assert [r['groups'] for r in log.rows] == [1, 3, 5, 6]
    assert [r['stage'] for r in log.rows] == ['frozen', 'partial', 'partial', 'unfrozen']
    assert [s['epoch'] for s in learn.unfreeze_log] == [0, 1, 2, 3]
    lrs = learn.unfreeze_log[0]['lrs']  # the rates of the stage's first batch: one-cycle starts at lr/25
    np.testing.assert_allclose(lrs, [1e-2/25 * 0.5**k for k in (5, 4, 3, 2, 1, 0)], rtol=1e-6)
    assert all(type(v) is float for v in lrs)

def test_gradual_stages():
    assert gradual_stages(1, 4, 8, 2) == ([1, 1, 1, 1, 1], 2)   # head, +2, +4, +6, all 8 groups
    assert gradual_stages(1, 6, 8, 2) == ([1, 1, 1, 1, 3], 2)   # the last stage gets the remaining epochs
    assert gradual_stages(2, 2, 8, 2) == ([2, 1, 1], 4)         # fewer epochs than stages: bigger steps

def test_cached_features_train_like_the_frozen_body(tmp_path):
    body = _tiny(tmp_path, cbs=FreezeNorm(), train_bn=False)  # 16 images, bs 16: one batch, order cannot matter
    body.freeze()
    with body.no_bar(), body.no_logging(): body.fit_one_cycle(3, 1e-2)
    cached = _tiny(tmp_path, cbs=FreezeNorm(), train_bn=False)
    with cached.no_bar(), cached.no_logging(): fl = cached.fit_head(3, 1e-2)
    torch.testing.assert_close(cached.model.fc.weight, body.model.fc.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cached.model.fc.bias, body.model.fc.bias, atol=1e-5, rtol=1e-4)
    assert not torch.equal(cached.model.fc.weight, torch.zeros_like(cached.model.fc.weight))
    with cached.no_bar(): assert cached.validate()[1] == pytest.approx(fl.validate()[1])  # same model, two routes
    assert cached.unfreeze_log[-1]['groups'] == 1

def test_random_tfms_need_views(tmp_path):
    learn = _tiny(tmp_path, augment='flip')
    assert random_tfms(learn.dls.train)
    with pytest.raises(ValueError, match=r'training transforms are random .*views=k'): cache_features(learn)
    c = cache_features(learn, views=3)
    assert c.train.shape == (3, 16, 512) and not np.array_equal(c.train[0], c.train[1])
    assert cache_features(learn, augment=False, views=3).views == 1  # un-augmented passes are all the same

def test_disk_cache_is_reused_and_never_overwritten(tmp_path):
    learn = _tiny(tmp_path/'a')
    c = cache_features(learn, path=tmp_path/'cache')
    assert sorted(p.name for p in (tmp_path/'cache').iterdir()) == ['features.json', 'train.npy', 'train_y.npy',
                                                                      'valid.npy', 'valid_y.npy']
    again = cache_features(learn, path=tmp_path/'cache')
    assert isinstance(again.train, np.memmap) and np.array_equal(again.train, c.train)
    mtime = (tmp_path/'cache'/'train.npy').stat().st_mtime_ns
    with pytest.raises(ValueError, match=r'holds features of other data.*views'):
        cache_features(_tiny(tmp_path/'b', augment='flip'), views=2, path=tmp_path/'cache')
    assert (tmp_path/'cache'/'train.npy').stat().st_mtime_ns == mtime
    (tmp_path/'other').mkdir(); (tmp_path/'other'/'mine.txt').write_text('keep')
    with pytest.raises(ValueError, match='not empty and holds no recipekit feature cache'):
        cache_features(learn, path=tmp_path/'other')
    assert (tmp_path/'other'/'mine.txt').read_text() == 'keep'

def test_probe_score_and_backbones(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    assert probe_score(rng.normal(size=(40, 8)) + 5*y[:, None], y) == 1.0  # separated by 5 sd
    assert probe_score(rng.normal(size=(40, 8)), y) < 0.8                  # noise
    t = probe_backbones(make_colours(tmp_path, n=8), [('tf_efficientnet_lite0', 32), ('resnet18', 32)],
                        check=False)
    assert list(t.arch) == ['tf_efficientnet_lite0', 'resnet18']
    assert t.probe[0] == 1.0 and t.sec_per_image[0] > 0       # red vs blue
    assert np.isnan(t.probe[1]) and 'No pretrained weights' in t.note[1]  # no offline weights: reported, not raised
    df = pd.DataFrame(dict(file=[str(p) for p in sorted(tmp_path.rglob('*.png'))]))
    df['kind'] = [Path(p).parent.name for p in df.file]
    df.rename(columns={'file': 'path'}).to_csv(tmp_path/'items.csv', index=False)
    t = probe_backbones(tmp_path/'items.csv', [('tf_efficientnet_lite0', 32)], label_col='kind', check=False)
    assert t.probe[0] == 1.0  # `label_col` reaches the CSV reader

def _probes(*rows): return pd.DataFrame([dict(zip(('arch', 'size', 'probe', 'separation', 'sec_per_image', 'note'), r))
                                         for r in rows])

def test_choose_transfer_tree():
    good = _probes(('tf_efficientnet_lite0', 160, .95, .90, .004, ''))
    poor = _probes(('tf_efficientnet_lite0', 160, .70, .40, .004, ''))
    assert choose_transfer(100, 10, good)['strategy'] == 'features'   # 10 per class
    assert choose_transfer(100, 10, poor)['strategy'] == 'features'   # too few to move the body anyway
    assert choose_transfer(2000, 10, good)['strategy'] == 'features'
    assert choose_transfer(2000, 10, poor)['strategy'] == 'gradual'
    assert choose_transfer(5000, 10, good)['strategy'] == 'partial'
    assert choose_transfer(5000, 10, poor)['strategy'] == 'full'
    assert choose_transfer(20000, 10, good)['strategy'] == 'full'
    c = choose_transfer(2000, 10, good)
    assert c['lr'] == transfer_plan('features', 200)['lr'] and c['arch'] == 'tf_efficientnet_lite0'
    assert 'separation 0.90' in c['explanation'] and c['explanation'].count('.') >= 3

def test_choose_transfer_backbone_and_budget():
    t = _probes(('tf_efficientnet_lite0', 160, .948, .896, .004, ''), ('tf_efficientnet_lite2', 260, .967, .934, .012, ''),
                ('tf_efficientnet_lite1', 240, .964, .928, .008, ''), ('resnet50', 224, np.nan, np.nan, np.nan, 'none'))
    assert choose_transfer(245, 2, t, n_valid=153)['arch'] == 'tf_efficientnet_lite1'  # within half a point, cheaper
    # features: 4 views x 245 + 153 valid images = 1133 passes; lite1 takes 9.1 s, lite0 4.5 s
    assert choose_transfer(245, 2, t, n_valid=153, budget_s=8)['arch'] == 'tf_efficientnet_lite0'
    c = choose_transfer(245, 2, t, n_valid=153, budget_s=1)
    assert c['arch'] == 'tf_efficientnet_lite0' and 'none fits the 1s budget' in c['explanation']

def test_recipe_strategies_run(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path), size=32, bs=4, augment='flip')
    for strategy, stages in (('features', [1]), ('partial', [1, 3]), ('gradual', [1, 3, 5, 7, 9]), ('full', [1, 9])):
        r = Recipe(arch='tf_efficientnet_lite0', size=32, bs=4, strategy=strategy, views=2, unfreeze=2,
                   freeze_epochs=1, epochs=0 if strategy == 'features' else 4 if strategy == 'gradual' else 1,
                   norm_policy='group', layer_decay=0.5)
        learn = recipe_learner(dls, recipe=r, cbs=EpochLog())  # measures what really trained, epoch by epoch
        stem = learn.model.conv_stem.weight.clone()
        with learn.no_bar(), learn.no_logging(): learn.fit_recipe()
        rows = learn.epoch_log.rows
        per_stage = [rows[0]['groups']] + [b['groups'] for a, b in zip(rows, rows[1:]) if b['groups'] != a['groups']]
        assert per_stage == stages, strategy
        assert [s['groups'] for s in learn.unfreeze_log] == stages, strategy  # what the run folder records
        assert len(rows) == r.freeze_epochs + r.epochs, strategy
        assert torch.equal(stem, learn.model.conv_stem.weight) == (stages[-1] < 9), strategy  # the stem trains iff all do

def test_recipe_validation():
    with pytest.raises(ValueError, match="strategy='features' trains only the classifier"):
        Recipe(strategy='features', epochs=3)
    with pytest.raises(ValueError, match='`strategy` must be one of'): Recipe(strategy='finetune')
    with pytest.raises(ValueError, match='`layer_decay` must be in'): Recipe(layer_decay=1.5)
    with pytest.raises(ValueError, match='`unfreeze` must be an int'): Recipe(unfreeze=0)
    r = choose_recipe(245, 2, probes=_probes(('tf_efficientnet_lite0', 160, .948, .896, .004, '')), n_valid=153)
    assert (r.strategy, r.arch, r.size, r.norm_policy) == ('features', 'tf_efficientnet_lite0', 160, 'frozen')
    assert Recipe.from_dict(json.loads(r.to_json())) == r and 'linear probe' in r.reasons[0]

def test_gradual_unfreezing_refuses_one_group_learner(tmp_path):
    learn = _tiny(tmp_path, splitter=lambda m: [list(m.parameters())])
    stem = learn.model.conv1.weight.clone()
    with pytest.raises(ValueError, match='would freeze nothing'): learn.fit_gradual([1])
    with pytest.raises(ValueError, match='would freeze nothing'):
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=GradualUnfreeze())
    assert torch.equal(stem, learn.model.conv1.weight)  # nothing trained

def test_bad_arguments_get_one_clear_error(tmp_path):
    learn = _tiny(tmp_path)
    for call, err, msg in [
        (lambda: learn.freeze_to(1.5), TypeError, 'takes a group index'),
        (lambda: learn.freeze_to(6), ValueError, 'would freeze all 6 parameter groups'),
        (lambda: learn.freeze_to(-6), ValueError, 'freezes none'),
        (lambda: learn.group_lrs('1e-3', .5), TypeError, '`lr` must be a number'),
        (lambda: learn.group_lrs(-1e-3), ValueError, '`lr` must be positive'),
        (lambda: learn.fit_gradual([1], lr=[1e-3, 1e-3]), ValueError, 'gives 2 head rate.s. for 1 stages'),
        (lambda: learn.fit_gradual([1], lr=0), ValueError, '`lr` must be positive'),
        (lambda: learn.fit_gradual([1], lr=slice(1e-5, 1e-3), decay=.5), ValueError, 'not both'),
        (lambda: learn.fit_head(0), ValueError, '`epochs` must be an int >= 1'),
        (lambda: learn.fit_head(1, lr=-1), ValueError, '`lr` must be positive'),
        (lambda: learn.fit_head(1, fit='fine_tune'), ValueError, '`fit` must be one of'),
        (lambda: learn.fit_head(1, cache='some/folder'), TypeError, 'For a cache on disk pass `path='),
        (lambda: GradualUnfreeze(every=1.5), ValueError, '`every` must be an int'),
        (lambda: TimmSplitter(skip='conv1.weight'), TypeError, 'list of parameter names'),
        (lambda: choose_transfer(245, 1), ValueError, 'at least 2'),
        (lambda: choose_transfer(0, 2), ValueError, '`n_train`'),
        (lambda: choose_transfer(245, 2, budget_s=0), ValueError, '`budget_s` must be a positive'),
        (lambda: choose_transfer(245, 2, pd.DataFrame()), ValueError, 'the table `probe_backbones` returns'),
        (lambda: probe_backbones(tmp_path, 'tf_efficientnet_lite0'), ValueError, r'\(timm architecture, image size\)'),
        (lambda: probe_backbones(tmp_path, [('tf_efficientnet_lite0', 32)], max_per_class=1), ValueError, '>= 2'),
    ]:
        with pytest.raises(err, match=msg): call()
    with pytest.raises(ValueError, match='does not have'):
        Learner(learn.dls, timm.create_model('resnet18', num_classes=2), splitter=TimmSplitter(skip=['nope'])).freeze()

def test_feature_cache_needs_a_timm_head(tmp_path):
    from fastai.vision.all import vision_learner
    dls = _tiny(tmp_path).dls
    vl = vision_learner(dls, 'resnet18', pretrained=False)
    with pytest.raises(ValueError, match='is not a timm model'): vl.fit_head(1)
    headless = Learner(dls, timm.create_model('resnet18', num_classes=0), loss_func=CrossEntropyLossFlat())
    with pytest.raises(ValueError, match='has no classifier'): cache_features(headless)

def test_cache_from_other_images_or_trained_body_is_refused(tmp_path):
    learn = _tiny(tmp_path/'a')
    c = cache_features(learn, path=tmp_path/'cache')
    other = _tiny(tmp_path/'b')  # the same counts, sizes, arch and weights: only the images differ
    with pytest.raises(ValueError, match='other training or validation images'):
        cache_features(other, path=tmp_path/'cache')
    with pytest.raises(ValueError, match='built from other images, other transforms .* or other body weights'):
        other.fit_head(1, cache=c)
    with learn.no_bar(), learn.no_logging(): learn.fit_head(1, cache=c)  # same learner: fine
    learn.unfreeze()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)  # the body moves
    with pytest.raises(ValueError, match=r'other body weights \(trained since\?\)'):
        cache_features(learn, path=tmp_path/'cache')
    with learn.no_bar(), learn.no_logging(): learn.fit_head(1)  # its own kept cache is stale: rebuilt
    assert learn.feature_cache is not c
    (tmp_path/'cache'/'valid.npy').write_bytes(b'junk')
    with pytest.raises(ValueError, match='incomplete or corrupt'): cache_features(_tiny(tmp_path/'a'), path=tmp_path/'cache')
    (tmp_path/'file').write_text('x')
    with pytest.raises(ValueError, match='is a file'): cache_features(learn, path=tmp_path/'file')

def test_forced_strategy_gets_its_plan():
    t = _probes(('tf_efficientnet_lite0', 160, .948, .896, .004, ''))
    c = choose_transfer(245, 2, t, strategy='gradual')
    assert (c['strategy'], c['epochs'], c['unfreeze']) == ('gradual', 4, 2) and 'set by the user' in c['explanation']
    r = choose_recipe(245, 2, probes=t, strategy='full')
    assert (r.strategy, r.freeze_epochs, r.epochs, r.norm_policy) == ('full', 1, 5, 'train')
    assert 'budget was not applied' in choose_transfer(245, 2, budget_s=10)['explanation']

def test_cache_from_other_transforms_is_refused(tmp_path):
    small = _tiny(tmp_path)
    c = cache_features(small)
    dls = image_dataloaders(make_colours(tmp_path, n=10), size=48, bs=16, augment='none',
                            batch_tfms=[Normalize.from_stats([.5]*3, [.5]*3)])
    torch.manual_seed(0)
    big = Learner(dls, timm.create_model('resnet18', num_classes=2), loss_func=CrossEntropyLossFlat(),
                  splitter=TimmSplitter())
    with pytest.raises(ValueError, match=r'other transforms \(size, crop, normalization\)'): big.fit_head(1, cache=c)

def test_gradual_unfreeze_is_one_fit_schedule(tmp_path):
    learn = _tiny(tmp_path, bs=4)
    with pytest.raises(ValueError, match='already decide what trains'):
        with learn.no_bar(), learn.no_logging(): learn.fit_gradual([1, 1], cbs=GradualUnfreeze())
    learn.add_cb(GradualUnfreeze())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(2, 1e-3)
    assert not any(isinstance(c, GradualUnfreeze) for c in learn.cbs)  # gone after its fit: it cannot refreeze the next
    with pytest.raises(ValueError, match='needs lo <= hi'): learn.fit_gradual([1], lr=slice(1e-3, 1e-5))

def test_fit_head_history_and_corrupt_cache_values(tmp_path):
    learn = _tiny(tmp_path)
    with learn.no_bar(), learn.no_logging(): learn.fit_head(3, 1e-2, path=tmp_path/'c')
    assert len(learn.recorder.values) == 3  # the head's epochs, on the learner's own recorder
    np.save(tmp_path/'c'/'train_y.npy', np.full(16, -1))
    with pytest.raises(ValueError, match='wrong shapes, types or values'): cache_features(learn, path=tmp_path/'c')

def test_body_strategies_need_body_epochs():
    with pytest.raises(ValueError, match=r"strategy='partial' trains body groups, but epochs=0"):
        Recipe(strategy='partial', epochs=0)

def test_kept_cache_is_rebuilt_when_norm_statistics_move(tmp_path):
    learn = _tiny(tmp_path, bs=4, train_bn=False)  # no FreezeNorm: frozen BN layers still update their statistics
    with learn.no_bar(), learn.no_logging(): learn.fit_head(1, 1e-2)
    first = learn.feature_cache
    learn.freeze()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-3)  # only the head's weights and BN buffers move
    with learn.no_bar(), learn.no_logging(): learn.fit_head(1, 1e-2)
    assert learn.feature_cache is not first and not np.array_equal(learn.feature_cache.valid, first.valid)
    with pytest.raises(ValueError, match=r'needs both ends of the slice'): learn.fit_gradual([1], lr=slice(1e-3))

import warnings
import pytest, torch
from torch import nn
import torch.nn.functional as F
from fastai.data.load import DataLoader
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.mixup import MixUp
import fastai.callback.progress  # noqa: F401 (adds `no_bar`)
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, FocalLossFlat, BCEWithLogitsLossFlat
from recipekit.mix import MixUpCutMix, cutmix_box, mix_loss, loss_smoothing

H, W = 37, 53

def tiny_learner(cbs, loss_func=None, n=5, bs=2, targets=None, shuffle=True):
    "A linear model on `n` random 37x53 images; targets: class i % 4, or the given tensor"
    torch.manual_seed(0)
    x = torch.rand(n, 3, H, W)
    t = torch.arange(n) % 4 if targets is None else targets
    dls = DataLoaders(DataLoader(list(zip(x, t)), bs=bs, shuffle=shuffle), DataLoader(list(zip(x, t)), bs=bs))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3*H*W, 4))
    return Learner(dls, model, loss_func=loss_func or nn.CrossEntropyLoss(), cbs=cbs)

def fit(learn, n=1):
    with learn.no_bar(), learn.no_logging(): learn.fit(n)

class Forced(MixUpCutMix):
    "A mixer whose draws are fixed: λ, the box centre and the pairing"
    def __init__(self, lam, centre=(0, 0), perm=None, **kwargs):
        super().__init__(**kwargs); self.forced = lam, centre, perm
    def sample_lam(self, alpha): return self.forced[0]
    def sample_centre(self, h, w): return self.forced[1]
    def draw(self, bs, h, w):
        kind, lam, perm, box = super().draw(bs, h, w)
        return kind, lam, (perm if self.forced[2] is None else self.forced[2]), box

class Grab(Callback):
    "Keeps the loss and its gradient with respect to the predictions, after the mixer"
    order = 50
    def after_loss(self):
        if not self.training: return
        self.value = self.learn.loss.item()
        self.grad = torch.autograd.grad(self.learn.loss_grad, self.learn.pred, retain_graph=True)[0]
        raise CancelFitException()

# --- CutMix's λ from the clipped box

def test_cutmix_box_corner_by_hand():
    # box 26x37 for λ=0.5; centred on a corner only a 13x18 quarter is inside
    assert cutmix_box(H, W, 0.5, 0, 0) == (0, 13, 0, 18, 1 - 234/1961)
    assert cutmix_box(H, W, 0.5, H - 1, W - 1) == (23, 37, 34, 53, 1 - 14*19/1961)

def test_cutmix_pastes_the_share_its_lambda_says():
    m = Forced(0.5, centre=(0, 0), perm=torch.tensor([1, 0]), p=1, cutmix_p=1)
    x = torch.stack([torch.zeros(3, H, W), torch.ones(3, H, W)])
    x2, y1, y2, lam, kind = m.mix(x, torch.tensor([0, 1]))
    assert kind == 'cutmix' and lam == pytest.approx(1 - 234/1961)
    assert (x2[0] == 1).float().mean().item() == pytest.approx(234/1961)  # pasted share = 1 - λ
    assert (x2[0, :, :13, :18] == 1).all() and y2.tolist() == [1, 0]

def test_cutmix_loss_weight_uses_the_clipped_lambda():
    g = Grab()
    learn = tiny_learner([Forced(0.5, centre=(0, 0), perm=torch.tensor([1, 0]), p=1, cutmix_p=1), g], n=2,
                         shuffle=False)
    fit(learn)
    lam = 1 - 234/1961
    with torch.no_grad():
        xb = learn.dls.train.one_batch()[0]
        xb[0, :, :13, :18] = xb[1, :, :13, :18]; xb[1, :, :13, :18] = learn.dls.train.one_batch()[0][0, :, :13, :18]
        pred = learn.model(xb)
        ce = nn.CrossEntropyLoss()
        expected = lam*ce(pred, torch.tensor([0, 1])) + (1 - lam)*ce(pred, torch.tensor([1, 0]))
    assert g.value == pytest.approx(expected.item(), rel=1e-5)

# --- label smoothing once, whichever way it is configured

SMOOTHING_CONFIGS = {
    'fastai loss smooths': (LabelSmoothingCrossEntropyFlat(eps=0.1), 0.),
    'torch loss smooths': (nn.CrossEntropyLoss(label_smoothing=0.1), 0.),
    'mixer smooths, torch CE': (nn.CrossEntropyLoss(), 0.1),
    'mixer smooths, fastai CE': (CrossEntropyLossFlat(), 0.1),
    'mixer smooths soft targets': (nn.CrossEntropyLoss(), 0.1),
}

@pytest.mark.parametrize('config', list(SMOOTHING_CONFIGS))
def test_mixup_with_smoothing_gives_one_exact_target(config):
    loss_func, smoothing = SMOOTHING_CONFIGS[config]
    targets = torch.tensor([0, 2])
    if 'soft' in config: targets = F.one_hot(targets, 4).float()
    g = Grab()
    learn = tiny_learner([Forced(0.7, perm=torch.tensor([1, 0]), p=1, cutmix_p=0, smoothing=smoothing), g],
                         loss_func=loss_func, n=2, targets=targets, shuffle=False)
    nn.init.zeros_(learn.model[1].weight); nn.init.zeros_(learn.model[1].bias)  # zero logits: grad = (1/C - target)/bs
    fit(learn)
    target = 0.25 - 2*g.grad
    expected = torch.tensor([[0.655, 0.025, 0.295, 0.025], [0.295, 0.025, 0.655, 0.025]])
    torch.testing.assert_close(target, expected, atol=1e-6, rtol=0)

def test_smoothing_twice_is_refused():
    learn = tiny_learner(MixUpCutMix(smoothing=0.1), loss_func=LabelSmoothingCrossEntropyFlat(eps=0.1))
    with pytest.raises(ValueError, match='Label smoothing is set twice'): fit(learn)

def test_mixer_smoothing_needs_cross_entropy():
    learn = tiny_learner(MixUpCutMix(smoothing=0.1), loss_func=FocalLossFlat())
    with pytest.raises(ValueError, match='does not fit the loss FocalLossFlat'): fit(learn)

def test_loss_smoothing_reads_both_libraries():
    assert loss_smoothing(LabelSmoothingCrossEntropyFlat(eps=0.2)) == 0.2
    assert loss_smoothing(nn.CrossEntropyLoss(label_smoothing=0.3)) == pytest.approx(0.3)
    assert loss_smoothing(CrossEntropyLossFlat()) == 0.

# --- any loss

@pytest.mark.parametrize('loss_func', [nn.CrossEntropyLoss(), nn.CrossEntropyLoss(weight=torch.tensor([1., 2, 3, 4])),
                                       FocalLossFlat(gamma=2.), CrossEntropyLossFlat(),
                                       nn.CrossEntropyLoss(reduction='sum')],
                         ids=['torch CE', 'class-weighted CE', 'focal', 'fastai CE', 'sum reduction'])
def test_any_integer_loss_is_lambda_weighted(loss_func):
    g = Grab()
    learn = tiny_learner([Forced(0.7, perm=torch.tensor([1, 0]), p=1, cutmix_p=0), g], loss_func=loss_func, n=2,
                         targets=torch.tensor([0, 3]), shuffle=False)
    fit(learn)
    x = learn.dls.train.one_batch()[0]
    with torch.no_grad():
        pred = learn.model(0.7*x + 0.3*x.flip(0))
        expected = 0.7*loss_func(pred, torch.tensor([0, 3])) + 0.3*loss_func(pred, torch.tensor([3, 0]))
    assert g.value == pytest.approx(expected.item(), rel=1e-5)

def test_fastai_mixup_fails_where_ours_trains():
    # ANCHORS trap 5: fastai's MixUp needs a loss with `y_int`
    with pytest.raises(Exception): fit(tiny_learner(MixUp(), loss_func=nn.CrossEntropyLoss()))
    fit(tiny_learner(MixUpCutMix(), loss_func=nn.CrossEntropyLoss()))

def test_multi_hot_targets_are_mixed():
    targets = torch.tensor([[1., 0, 1, 0], [0, 1, 0, 0]])
    m = Forced(0.7, perm=torch.tensor([1, 0]), p=1, cutmix_p=0)
    _, y, y2, lam, _ = m.mix(torch.rand(2, 3, H, W), targets)
    torch.testing.assert_close(y, torch.tensor([[0.7, 0.3, 0.7, 0.], [0.3, 0.7, 0.3, 0.]]))
    assert y2 is None
    fit(tiny_learner(MixUpCutMix(), loss_func=BCEWithLogitsLossFlat(), n=2, targets=targets))

def test_unmixed_loss_at_zero_logits_is_ln_c():
    l = mix_loss(nn.CrossEntropyLoss(), torch.zeros(1, 4), torch.tensor([0]), torch.tensor([0]), 1.)
    assert l.item() == pytest.approx(torch.log(torch.tensor(4.)).item())

# --- batches, epochs, probabilities

@pytest.mark.parametrize('n,bs', [(5, 2), (7, 3), (1, 1), (3, 4)])
@pytest.mark.parametrize('cutmix_p', [0., 1.])
def test_odd_and_single_image_batches(n, bs, cutmix_p):
    m = MixUpCutMix(cutmix_p=cutmix_p)
    fit(tiny_learner(m, n=n, bs=bs))
    assert len(m.history) == -(-n//bs) and {k for _, k, _ in m.history} == {'cutmix' if cutmix_p else 'mixup'}

@pytest.mark.parametrize('off,n_epoch,mixed', [(1, 3, [0, 1]), (0.5, 4, [0, 1]), (0, 2, [0, 1]),
                                              (0.1, 10, list(range(9)))])
def test_off_epochs(off, n_epoch, mixed):
    m = MixUpCutMix(off_epochs=off)
    fit(tiny_learner(m, n=2, bs=2), n_epoch)
    assert sorted({e for e, k, _ in m.history if k}) == mixed
    assert all(k is None for e, k, _ in m.history if e not in mixed)

def test_off_epochs_covering_the_fit_warns():
    m = MixUpCutMix(off_epochs=3)
    with pytest.warns(UserWarning, match='switches mixing off for all 2 epochs'): fit(tiny_learner(m, n=2), 2)
    assert all(k is None for _, k, _ in m.history)

@pytest.mark.parametrize('kw,kinds', [(dict(p=0.), {None}), (dict(cutmix_p=1.), {'cutmix'}),
                                      (dict(mixup_alpha=0), {'cutmix'}),
                                      (dict(cutmix_alpha=0, cutmix_p=1.), {'mixup'})])
def test_probabilities(kw, kinds):
    m = MixUpCutMix(**kw)
    fit(tiny_learner(m, n=20, bs=2), 2)
    assert {k for _, k, _ in m.history} == kinds

def test_p_is_a_share_of_batches():
    torch.manual_seed(0)
    m = MixUpCutMix(p=0.3)
    fit(tiny_learner(m, n=400, bs=2), 1)
    share = sum(k is not None for _, k, _ in m.history)/len(m.history)
    assert 0.23 < share < 0.37  # 200 batches, 3 standard deviations

# --- validation untouched, nothing to restore

def test_validation_is_untouched():
    learn = tiny_learner(MixUpCutMix(p=1.), n=6, bs=3)
    plain = tiny_learner(None, n=6, bs=3); plain.model.load_state_dict(learn.model.state_dict())
    with learn.no_bar(): a = learn.get_preds()[0]
    with plain.no_bar(): b = plain.get_preds()[0]
    assert torch.equal(a, b)
    with learn.no_bar(), plain.no_bar(): assert learn.validate()[0] == plain.validate()[0]

class Stop(Callback):
    def __init__(self, exc): self.exc, self.n = exc, 0
    def after_batch(self):
        self.n += 1
        if self.n == 2: raise self.exc

@pytest.mark.parametrize('exc', [None, CancelFitException(), KeyboardInterrupt()], ids=['fit', 'cancel', 'interrupt'])
def test_loss_func_is_the_learners_after_fit_cancel_and_interrupt(exc):
    learn = tiny_learner([MixUpCutMix()] + ([Stop(exc)] if exc else []), n=8, bs=2)
    lf = learn.loss_func
    try: fit(learn, 2)
    except KeyboardInterrupt: pass
    assert learn.loss_func is lf
    with learn.no_bar(): learn.validate()  # and the learner still works

# --- bad arguments

@pytest.mark.parametrize('kw,msg', [(dict(mixup_alpha=-1), '`mixup_alpha` must be a number >= 0'),
                                    (dict(mixup_alpha=0, cutmix_alpha=0), 'both 0'),
                                    (dict(p=1.5), '`p` must be a probability'),
                                    (dict(cutmix_p='x'), '`cutmix_p` must be a probability'),
                                    (dict(off_epochs=-1), '`off_epochs` must be'),
                                    (dict(smoothing=1.), '`smoothing` must be in')])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg): MixUpCutMix(**kw)

def test_show_train_batch_titles_mixed_labels():
    import matplotlib; matplotlib.use('Agg')
    from fastai.data.transforms import CategoryMap
    learn = tiny_learner(Forced(0.7, perm=torch.tensor([1, 0]), p=1, cutmix_p=0), n=2, shuffle=False,
                         targets=torch.tensor([0, 2]))
    learn.dls.vocab = CategoryMap(['a', 'b', 'c', 'd'])
    fig = learn.show_train_batch(n=2)
    assert [ax.get_title() for ax in fig.axes[:2]] == ['a 0.70 + c 0.30', 'c 0.70 + a 0.30']

def test_fastai_mixup_beside_ours_is_refused():
    learn = tiny_learner([MixUp(), MixUpCutMix()])
    with pytest.raises(ValueError, match="also has fastai's MixUp, so batches would be mixed twice"): fit(learn)

def test_p_must_be_a_number_not_a_bool():
    with pytest.raises(ValueError, match='`p` must be a probability'): MixUpCutMix(p=True)

def test_show_train_batch_multi_hot_and_bad_n():
    import matplotlib; matplotlib.use('Agg')
    from fastai.data.transforms import CategoryMap
    targets = torch.tensor([[1., 0, 1, 0], [0, 1, 0, 0]])
    learn = tiny_learner(Forced(0.7, perm=torch.tensor([1, 0]), p=1, cutmix_p=0), loss_func=BCEWithLogitsLossFlat(),
                         n=2, targets=targets, shuffle=False)
    learn.dls.vocab = CategoryMap(['a', 'b', 'c', 'd'])
    fig = learn.show_train_batch(n=2)
    assert fig.axes[0].get_title() == 'a 0.70, b 0.30, c 0.70'
    with pytest.raises(ValueError, match='`n` must be an int >= 1, got 0'): learn.show_train_batch(n=0)

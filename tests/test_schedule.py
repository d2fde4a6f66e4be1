import math
import numpy as np, pytest, torch
from torch import nn
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback  # noqa: F401  (gives `no_bar`)
from recipekit.schedule import warmup_cos_lr, WarmupCosine

def _learner(n=28, bs=4):
    "A tiny two-group model: 7 training steps per epoch"
    torch.manual_seed(0)
    xy = [(torch.randn(4), i % 2) for i in range(n)]
    dls = DataLoaders(DataLoader(xy, bs=bs, shuffle=True, drop_last=True), DataLoader(xy, bs=bs))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(),
                   splitter=lambda m: [list(m[0].parameters()), list(m[2].parameters())])

def _expected(n, w, peak, start, floor):
    "Hand-written: linear 0..w, cosine w..n-1"
    out = []
    for i in range(n):
        if i <= w: out.append(start + (peak - start) * i / w)
        else: out.append(floor + (peak - floor) * (1 + math.cos(math.pi * (i - w) / (n - 1 - w))) / 2)
    return np.array(out)

def test_exact_trace_10_epochs_7_steps_2_warmup():
    learn = _learner()
    class Seen(Callback):  # reads the optimizer after the schedule set this batch's rates
        order, lrs = 70, []
        def before_batch(self):
            if self.training: self.lrs.append([h['lr'] for h in self.opt.hypers])
    with learn.no_bar(), learn.no_logging():
        learn.fit_warmup_cos(10, 1e-3, warmup_epochs=2, warmup_div=100, final_div=1000, cbs=Seen())
    got = np.array(Seen.lrs)
    assert got.shape == (70, 2)
    exp = _expected(70, 14, 1e-3, 1e-5, 1e-6)
    np.testing.assert_allclose(got[:, 1], exp, rtol=1e-12)
    assert got[0, 1] == pytest.approx(1e-5) and got[14, 1] == pytest.approx(1e-3) and got[69, 1] == pytest.approx(1e-6)
    assert got[:, 1].argmax() == 14 and (np.diff(got[14:, 1]) < 0).all()  # never rises after the peak
    assert 0 < got[14, 1] - got[15, 1] < got[14, 1] - got[13, 1]  # continuous at the peak: the decay starts gently
    assert [h['lr'] for h in learn.opt.hypers] == [1e-3, 1e-3]  # the peak is restored after the fit

@pytest.mark.parametrize('lr', [slice(1e-4, 1e-2), [1e-4, 1e-2], np.array([1e-4, 1e-2])])
def test_per_group_rates_keep_their_ratio(lr):
    learn = _learner()
    with learn.no_bar(), learn.no_logging(): learn.fit_warmup_cos(3, lr, warmup_epochs=0.5)
    tr = np.array(learn.lr_trace)
    np.testing.assert_allclose(tr[:, 0] / tr[:, 1], np.full(len(tr), 1e-2), rtol=1e-12)
    np.testing.assert_allclose(tr[:, 1], _expected(21, 4, 1e-2, 1e-4, 1e-5), rtol=1e-12)  # 0.5 epoch = 4 steps

def test_momentum_constant_and_bad_arguments():
    learn = _learner()
    with learn.no_bar(), learn.no_logging(): learn.fit_warmup_cos(2, 1e-3, mom=0.85)
    assert all(h['mom'] == 0.85 for h in learn.opt.hypers)
    with pytest.raises(ValueError, match='leaves no epoch for the decay'): learn.fit_warmup_cos(2, 1e-3, warmup_epochs=2)
    with pytest.raises(ValueError, match='`n_epoch` must be an int >= 1'): learn.fit_warmup_cos(0, 1e-3)
    with pytest.raises(ValueError, match='`final_div` must be >= 1'): WarmupCosine(final_div=0.5)
    assert warmup_cos_lr(0, 10, 0, 1.0, 0.01, 0.001) == 1.0  # no warm-up: the first step runs at the peak

def test_no_decay_sets_of_convnext_and_vit():
    import timm
    from recipekit.schedule import no_decay_names
    cnx = timm.create_model('convnext_atto', num_classes=3)
    names = no_decay_names(cnx)
    expected = {n for n, p in cnx.named_parameters() if p.ndim <= 1}  # norms (LayerNorm), biases, layer scales
    assert names == expected and 'stem.1.weight' in names and 'stages.0.blocks.0.gamma' in names
    assert 'stages.0.blocks.0.conv_dw.weight' not in names
    vit = timm.create_model('vit_tiny_patch16_224', num_classes=3)
    names = no_decay_names(vit)
    assert names == {n for n, p in vit.named_parameters() if p.ndim <= 1} | {'pos_embed', 'cls_token'}

def test_no_decay_callback_really_skips_decay():
    from recipekit.schedule import NoDecay
    from fastai.optimizer import Adam
    torch.manual_seed(0)
    xy = [(torch.randn(4, 6, 6), i % 2) for i in range(8)]
    dls = DataLoaders(DataLoader(xy, bs=8, drop_last=True), DataLoader(xy, bs=8))
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(64, 2))
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=Adam, wd=0.5, cbs=NoDecay())
    class ZeroGrad(Callback):  # weight decay only: every gradient is zero
        def before_step(self):
            for p in self.model.parameters(): p.grad.zero_()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with learn.no_bar(), learn.no_logging(): learn.fit(1, lr=0.1, cbs=ZeroGrad())
    after = dict(model.named_parameters())
    for n in ('1.weight', '1.bias', '0.bias', '3.bias'):  # GroupNorm (fastai's rule misses it) and biases
        assert torch.equal(after[n], before[n]), n
    for n in ('0.weight', '3.weight'):
        torch.testing.assert_close(after[n], before[n] * (1 - 0.1 * 0.5))  # decayed once, decoupled

def test_no_decay_before_any_fit():
    from recipekit.schedule import NoDecay
    xy = [(torch.randn(4), i % 2) for i in range(8)]
    learn = Learner(DataLoaders(DataLoader(xy, bs=4), DataLoader(xy, bs=4)), nn.Linear(4, 2),
                    loss_func=nn.CrossEntropyLoss(), cbs=NoDecay())
    with learn.no_bar(): assert len(learn.validate()) == 1  # validate sends before_fit before any optimizer exists

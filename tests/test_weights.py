import math, random, pytest, torch, timm
import pandas as pd
from pathlib import Path
from safetensors.torch import save_file
from recipekit.weights import (load_weights_file, match_state_dict, find_weights, create_backbone, norm_stats,
                               hub_cache_file, check_arch, WEIGHT_PACKAGES)
from conftest import shared_data

@pytest.mark.parametrize('arch', list(WEIGHT_PACKAGES))
def test_packages_map_in_order(arch):
    m = create_backbone(arch)
    assert m.weights_source.kind == 'package'
    ref = torch.load(find_weights(arch).path, weights_only=True)
    # key by key, in order: the package's first conv and last classifier tensors land on timm's
    assert torch.equal(m.conv_stem.weight, list(ref.values())[0])
    assert torch.equal(m.classifier.bias, ref['_fc.bias'])
    assert norm_stats(m) == ((0.5,)*3, (0.5,)*3)

@pytest.mark.parametrize('suffix', ['.safetensors', '.pth'])
def test_explicit_file_by_name(tmp_path, suffix):
    src = timm.create_model('resnet18', num_classes=10)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    fn = tmp_path/f'w{suffix}'
    save_file(sd, str(fn)) if suffix == '.safetensors' else torch.save(sd, fn)
    m = create_backbone('resnet18', weights=fn)
    assert m.weights_source.kind == 'file'
    assert torch.equal(m.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    # the 10-class head of the file is skipped for timm's 1000-class model, not forced in
    assert m.fc.out_features == 1000

def test_wrapped_checkpoint_is_unwrapped(tmp_path):
    src = timm.create_model('resnet18')
    torch.save({'state_dict': src.state_dict(), 'epoch': 3}, tmp_path/'ck.pth')
    m = create_backbone('resnet18', weights=tmp_path/'ck.pth')
    assert torch.equal(m.conv1.weight, src.conv1.weight)

def test_file_that_does_not_fit(tmp_path):
    save_file({k: v.contiguous() for k, v in timm.create_model('resnet18').state_dict().items()},
              str(tmp_path/'r18.safetensors'))
    with pytest.raises(ValueError, match='Weights do not fit'):
        create_backbone('tf_efficientnet_lite0', weights=tmp_path/'r18.safetensors')

def test_sibling_architecture_named(tmp_path):
    save_file({k: v.contiguous() for k, v in timm.create_model('tf_efficientnet_lite1').state_dict().items()},
              str(tmp_path/'l1.safetensors'))
    with pytest.raises(ValueError, match=r"file keys not in the model: \['blocks.*saved from another architecture"):
        create_backbone('tf_efficientnet_lite0', weights=tmp_path/'l1.safetensors')

def test_same_count_different_shapes():
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match='differ in shape, first: weight'): match_state_dict(a.state_dict(), b)

def test_pickled_code_is_never_run(tmp_path):
    class Evil:
        def __reduce__(self): return (Path.touch, (tmp_path/'pwned',))
    torch.save({'w': torch.ones(1), 'x': Evil()}, tmp_path/'evil.pth')
    with pytest.raises(ValueError, match='never unpickles'): create_backbone('resnet18', weights=tmp_path/'evil.pth')
    assert not (tmp_path/'pwned').exists()

@pytest.mark.parametrize('content,msg', [(b'', 'not a torch or safetensors file'),
                                         (b'garbage' * 10, 'not a torch or safetensors file')])
def test_corrupt_files(tmp_path, content, msg):
    (tmp_path/'bad.pth').write_bytes(content)
    with pytest.raises(ValueError, match=msg) as e: load_weights_file(tmp_path/'bad.pth')
    assert 'weights_only=False' not in str(e.value)  # never suggest the unsafe load
    (tmp_path/'bad.safetensors').write_bytes(content)
    with pytest.raises(ValueError, match='not a readable safetensors file'):
        load_weights_file(tmp_path/'bad.safetensors')

def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path/'list.pth')
    with pytest.raises(ValueError, match='does not hold a state dict'): load_weights_file(tmp_path/'list.pth')

def test_missing_file():
    with pytest.raises(ValueError, match="does not exist"):
        create_backbone('resnet18', weights='/no/such/file.safetensors')

def test_unknown_arch():
    with pytest.raises(ValueError, match=r"Unknown architecture 'resnet181'.*Did you mean 'resnet18'"):
        check_arch('resnet181')
    with pytest.raises(TypeError, match='must be a timm architecture name'): check_arch(18)

def test_no_weights_lists_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path/'hf')); monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    with pytest.raises(ValueError) as e: create_backbone('resnet18')
    msg = str(e.value)
    for part in ("No pretrained weights for 'resnet18'", '1. an explicit file', '2. weight package',
                 '3. hub cache: timm/resnet18.a1_in1k', 'pretrained=False'): assert part in msg
    assert create_backbone('resnet18', pretrained=False).weights_source is None

def test_hf_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path/'hf'))
    snap = tmp_path/'hf'/'models--timm--resnet18.a1_in1k'/'snapshots'/'abc123'
    snap.mkdir(parents=True)
    (tmp_path/'hf'/'models--timm--resnet18.a1_in1k'/'refs').mkdir()
    (tmp_path/'hf'/'models--timm--resnet18.a1_in1k'/'refs'/'main').write_text('abc123')
    src = timm.create_model('resnet18')
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(snap/'model.safetensors'))
    m = create_backbone('resnet18')
    assert m.weights_source.kind == 'hub-cache'
    assert torch.equal(m.conv1.weight, src.conv1.weight)

def test_torch_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path/'hf')); monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    (tmp_path/'torch'/'hub'/'checkpoints').mkdir(parents=True)
    src = timm.create_model('resnet18')
    torch.save(src.state_dict(), tmp_path/'torch'/'hub'/'checkpoints'/'resnet18_a1_0-d63eafa0.pth')
    assert hub_cache_file('resnet18').name == 'resnet18_a1_0-d63eafa0.pth'
    assert torch.equal(create_backbone('resnet18').conv1.weight, src.conv1.weight)

def _imagenette_top1(model, items, idx, mean, std, size=224):
    from recipekit.images import open_rgb
    import numpy as np
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(items), 50):
            xs = []
            for p, _ in items[i:i+50]:
                im = open_rgb(p, size=size); w, h = im.size; s = size/0.875/min(w, h)
                im = im.resize((max(size, round(w*s)), max(size, round(h*s))), 3); w, h = im.size
                l, t = (w-size)//2, (h-size)//2
                xs.append(torch.from_numpy(np.array(im.crop((l, t, l+size, t+size)))).permute(2, 0, 1).float()/255)
            x = (torch.stack(xs)-mean)/std
            pred = model(x).argmax(1)
            correct += sum(int(p == idx[w]) for p, (_, w) in zip(pred.tolist(), items[i:i+50]))
    return correct/len(items)

def test_lite0_classifies_imagenette_1000_way():
    root = shared_data('imagenette-160')
    idx = dict(pd.read_csv(root/'classes.csv')[['wnid', 'imagenet_index']].values)
    items = sorted((p, p.parent.name) for p in (root/'val').glob('*/*.JPEG'))
    items = random.Random(0).sample(items, 500)
    m = create_backbone('tf_efficientnet_lite0').eval()
    own = _imagenette_top1(m, items, idx, *norm_stats(m))
    imagenet = _imagenette_top1(m, items, idx, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert own > 0.60, own
    assert own > imagenet + 0.03, (own, imagenet)  # measured on all 3,925: 66.9% vs 57.8%

import json, os, subprocess, sys, pytest, torch, timm
import pandas as pd
from pathlib import Path
from safetensors.torch import save_file
from recipekit.cli import main
from conftest import make_folder, make_colours, shared_data

FAST = ['--arch', 'tf_efficientnet_lite0', '--size', '32', '--epochs', '1', '--freeze-epochs', '1', '--bs', '4']

def _err(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.err

def _bad_weights(p):
    save_file({k: v.contiguous() for k, v in timm.create_model('resnet18').state_dict().items()}, str(p/'r18.safetensors'))
    return ['--weights', str(p/'r18.safetensors')]

@pytest.mark.parametrize('setup,msg', [
    (lambda p: [str(p/'nope')], 'does not exist'),
    (lambda p: [str((p/'empty').mkdir() or p/'empty')], 'has no class folders'),
    (lambda p: [str(make_folder(p/'one', {'cat': 3}))], 'Only one class'),
    (lambda p: [str(make_folder(p/'e', {'cat': 3, 'dog': 3}))] if (p/'e'/'fish').mkdir(parents=True) is None else [], 'Class folder .*fish.* has no images'),
    (lambda p: [str(make_colours(p/'c'))] if (p/'c'/'red').mkdir(parents=True) is None and (p/'c'/'red'/'bad.jpg').write_bytes(b'\xff\xd8\xff\xe0junk') else [], 'cannot be decoded'),
    (lambda p: [str(make_colours(p/'c')), '--arch', 'efficientnet_b99'], "Unknown architecture 'efficientnet_b99'"),
    (lambda p: [str(make_colours(p/'c')), '--arch', 'tf_efficientnet_lite0'] + _bad_weights(p), 'Weights do not fit'),
    (lambda p: [str(make_colours(p/'c')), '--recipe', str(p/'none.json')], 'Recipe file .* does not exist'),
    (lambda p: [str(make_colours(p/'c')), '--epochs', '0', '--freeze-epochs', '0'], 'nothing would be trained'),
])
def test_bad_input_one_message_exit_2(tmp_path, capsys, monkeypatch, setup, msg):
    monkeypatch.chdir(tmp_path)
    code, err = _err(capsys, ['train'] + setup(tmp_path))
    assert code == 2
    assert err.startswith('recipekit: error: ') and 'Traceback' not in err
    import re; assert re.search(msg, err), err
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())  # no half-written run folder

def test_train_writes_a_new_run_folder_each_time(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)
    assert main(['train', str(data)] + FAST) == 0
    out = capsys.readouterr().out
    assert 'done: accuracy' in out and 'run folder: runs/' in out
    assert 'epoch  0 (frozen  )' in out and 'epoch  1 (unfrozen)' in out  # one line per epoch: output is not a terminal
    assert main(['train', str(data)] + FAST) == 0
    runs = sorted((tmp_path/'runs').iterdir())
    assert len(runs) == 2 and runs[0].name.endswith('-colours')
    for r in runs: assert (r/'model.safetensors').is_file() and (r/'top_losses.png').is_file()
    info = json.loads((runs[0]/'recipe.json').read_text())
    assert info['recipe']['size'] == 32 and info['layout'] == 'class-folders' and info['n_valid'] == 2
    assert any('set by the user' in r for r in info['recipe']['reasons'])

def test_recipe_file_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)
    assert main(['train', str(data), '--out', 'a'] + FAST) == 0
    first = next((tmp_path/'a').iterdir())
    (tmp_path/'r.json').write_text(json.dumps(json.loads((first/'recipe.json').read_text())['recipe']))
    assert main(['train', str(data), '--out', 'b', '--recipe', str(tmp_path/'r.json')]) == 0
    second = next((tmp_path/'b').iterdir())
    a, b = (json.loads((d/'recipe.json').read_text())['recipe'] for d in (first, second))
    assert a == b

def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert 'train' in capsys.readouterr().out

def test_console_script_is_installed(tmp_path):
    exe = Path(sys.executable).parent/'recipekit'
    r = subprocess.run([str(exe), 'train', str(tmp_path/'nope')], capture_output=True, text=True)
    assert r.returncode == 2 and 'does not exist' in r.stderr

def test_hymenoptera_with_defaults_reaches_95(tmp_path, capsys, monkeypatch):
    data = shared_data('hymenoptera')
    monkeypatch.chdir(tmp_path)
    assert main(['train', str(data)]) == 0
    run = next((tmp_path/'runs').iterdir())
    info = json.loads((run/'recipe.json').read_text())
    assert info['n_train'] == 245 and info['n_valid'] == 153
    assert info['accuracy'] >= 0.95, info['accuracy']
    m = pd.read_csv(run/'metrics.csv')
    assert len(m) == info['recipe']['freeze_epochs'] + info['recipe']['epochs']
    assert m.seconds.sum() < 180

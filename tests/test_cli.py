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
    save_file({k: v.contiguous() for k, v in timm.create_model('resnet18').state_dict().items()},
              str(p/'r18.safetensors'))
    return ['--weights', str(p/'r18.safetensors')]

@pytest.mark.parametrize('setup,msg', [
    (lambda p: [str(p/'nope')], 'does not exist'),
    (lambda p: [str((p/'empty').mkdir() or p/'empty')], 'has no class folders'),
    (lambda p: [str(make_folder(p/'one', {'cat': 3}))], 'Only one class'),
    (lambda p: [str(make_folder(p/'e', {'cat': 3, 'dog': 3}))] if (p/'e'/'fish').mkdir(parents=True) is None else [],
     r'class folder\(s\) without images:\n.*fish'),
    (lambda p: [str(make_colours(p/'c'))] if (p/'c'/'red').mkdir(parents=True) is None and
               (p/'c'/'red'/'bad.jpg').write_bytes(b'\xff\xd8\xff\xe0junk') else [], 'cannot be used'),
    (lambda p: [str(make_colours(p/'c')), '--arch', 'efficientnet_b99'], "Unknown architecture 'efficientnet_b99'"),
    (lambda p: [str(make_colours(p/'c')), '--arch', 'tf_efficientnet_lite0'] + _bad_weights(p), 'Weights do not fit'),
    (lambda p: [str(make_colours(p/'c')), '--recipe', str(p/'none.json')], 'Recipe file .* does not exist'),
    (lambda p: [str(make_colours(p/'c')), '--epochs', '0', '--freeze-epochs', '0'], 'nothing would be trained'),
    (lambda p: [str(make_colours(p/'c')), '--out', '/proc/recipekit-nope'] + FAST, 'Cannot create a run folder under'),
    (lambda p: [str(make_folder(p/'t', {'a': 2, 'b': 2}, split='train'))],
     r"has split folders \['train'\] but not both"),
    (lambda p: [str((p/'z.csv').write_text('') or p/'z.csv')], 'cannot be read as a table'),
    (lambda p: [str(make_colours(p/'c')), '--weights',
                str((p/'g.pth').write_bytes(bytes(range(256))*20) and p/'g.pth')] + FAST,
     'could not be read as a state dict'),
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
    assert main(['train', str(data), '--out', 'b',
                 '--recipe', str(first/'recipe.json')]) == 0  # a run's own recipe.json
    second = next((tmp_path/'b').iterdir())
    a, b = (json.loads((d/'recipe.json').read_text())['recipe'] for d in (first, second))
    assert b['reasons'] == [f"loaded from {first/'recipe.json'}"]
    assert {k: v for k, v in a.items() if k != 'reasons'} == {k: v for k, v in b.items() if k != 'reasons'}

def test_batch_larger_than_data_is_capped(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)  # 10 training images
    assert main(['train', str(data), '--bs', '100'] + FAST[:-2]) == 0
    run = next((tmp_path/'runs').iterdir())
    info = json.loads((run/'recipe.json').read_text())
    assert info['recipe']['bs'] == 10 and 'batch size lowered to the 10 training images' in info['recipe']['reasons']
    assert len(pd.read_csv(run/'metrics.csv')) == 2  # both epochs really trained

def test_random_init_has_no_frozen_stage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)
    assert main(['train', str(data), '--no-pretrained', '--arch', 'resnet18', '--size', '32', '--bs', '4']) == 0
    info = json.loads((next((tmp_path/'runs').iterdir())/'recipe.json').read_text())
    assert info['recipe']['freeze_epochs'] == 0 and info['weights_source'] is None

def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert 'train' in capsys.readouterr().out

def test_console_script_is_installed(tmp_path):
    exe = Path(sys.executable).parent/'recipekit'
    r = subprocess.run([str(exe), 'train', str(tmp_path/'nope')], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith('recipekit: error: ') and 'does not exist' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one message, no warnings from the stack

def test_hymenoptera_with_defaults_reaches_95(tmp_path, capsys, monkeypatch):
    data = shared_data('hymenoptera')
    monkeypatch.chdir(tmp_path)
    assert main(['train', str(data)]) == 0
    run = next((tmp_path/'runs').iterdir())
    info = json.loads((run/'recipe.json').read_text())
    assert info['n_train'] == 245 and info['n_valid'] == 153
    assert info['accuracy'] >= 0.95, info['accuracy']
    m = pd.read_csv(run/'metrics.csv')
    # time is measured by the benchmark, not here
    assert len(m) == info['recipe']['freeze_epochs'] + info['recipe']['epochs']

def test_train_audits_first_and_keeps_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)
    (data/'red'/'zero.png').write_bytes(b'')
    code, err = _err(capsys, ['train', str(data)] + FAST)
    assert (code == 2 and '1 of 13 image files cannot be used' in err and 'zero.png: the file is empty' in err and
            '--skip-bad' in err)
    assert main(['train', str(data), '--skip-bad'] + FAST) == 0
    out = capsys.readouterr().out
    assert 'audit: 13 files, 1 problems; skipped 1 unusable files' in out
    run = next((tmp_path/'runs').iterdir())
    t = pd.read_csv(run/'audit.csv')
    assert t[t.severity == 'problem'][['kind', 'path']].values.tolist() == [['empty-file', 'red/zero.png']]
    assert (data/'red'/'zero.png').exists()  # nothing the user had is touched

def test_train_warns_on_copies_across_the_split_and_dedupe_moves_them(tmp_path, capsys, monkeypatch):
    import shutil
    monkeypatch.chdir(tmp_path)
    for seed, split in enumerate(('train', 'valid')): make_colours(tmp_path/'d'/split, n=4, seed=seed)
    shutil.copyfile(tmp_path/'d'/'train'/'red'/'0.png', tmp_path/'d'/'valid'/'red'/'copy.png')
    assert main(['train', str(tmp_path/'d')] + FAST) == 0
    out = capsys.readouterr().out
    assert 'warning: 1 validation images have a copy in training' in out and '--dedupe' in out
    assert main(['train', str(tmp_path/'d'), '--dedupe'] + FAST) == 0
    out = capsys.readouterr().out
    assert 'moved 1 validation images with a copy or group in training into training' in out
    assert 'train: tf_efficientnet_lite0 at 32px, 9 train / 8 valid images' in out

def test_augment_preset_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)
    assert main(['train', str(data), '--augment', 'mix'] + FAST) == 0
    run = next((tmp_path/'runs').iterdir())
    assert json.loads((run/'recipe.json').read_text())['recipe']['augment'] == 'mix'
    assert main(['train', str(data)] + FAST) == 0
    out = capsys.readouterr().out
    assert "recipe: augmentation: 2 epochs on 5 images per class: 'flip'" in out
    with pytest.raises(SystemExit): main(['train', str(data), '--augment', 'heavy'])
    assert "invalid choice: 'heavy'" in capsys.readouterr().err

def test_flipping_preset_on_tiny_images_warns(tmp_path, capsys, monkeypatch):
    from recipekit.recipe import choose_recipe
    with pytest.warns(UserWarning, match="augment='mix' mirrors training images, but these are tiny glyph-like images"):
        r = choose_recipe(1437, 10, short_side=8, augment='mix')
    assert r.augment == 'mix'
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert choose_recipe(1437, 10, short_side=8).augment == 'crop'  # the chosen preset does not warn

def test_strategy_probe_and_stages_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_colours(tmp_path/'colours', n=6)
    assert main(['train', str(data), '--strategy', 'gradual'] + FAST) == 0
    out = capsys.readouterr().out
    assert 'probe: tf_efficientnet_lite0 at 32px, linear probe 100.0%' in out  # --arch: only that backbone is probed
    run = next((tmp_path/'runs').iterdir())
    info = json.loads((run/'recipe.json').read_text())
    assert info['recipe']['strategy'] == 'gradual' and "set by the user: " in info['recipe']['reasons'][-1]
    assert [s['groups'] for s in info['stages']] == [1, 9]  # the head, then all 8 body groups of lite0
    assert list(pd.read_csv(run/'metrics.csv').groups) == [1, 9]
    assert info['probes'][0]['arch'] == 'tf_efficientnet_lite0' and info['probes'][0]['probe'] == 1.0

def test_budget_must_be_positive(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _err(capsys, ['train', str(make_colours(tmp_path/'c', n=6)), '--budget', '0'] + FAST)
    assert code == 2 and '--budget must be a positive number of minutes, got 0.0' in err
    assert not (tmp_path/'runs').exists()

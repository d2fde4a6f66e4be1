import json, pandas as pd, pytest, torch
from recipekit.data import image_dataloaders
from recipekit.learner import recipe_learner
from recipekit.recipe import Recipe
from recipekit.runs import new_run_dir, EpochLog, save_run, load_run_model, top_losses
from conftest import make_colours

def test_run_folder_contract(tmp_path):
    dls = image_dataloaders(make_colours(tmp_path/'data'), size=32, bs=4)
    learn = recipe_learner(dls, recipe=Recipe(arch='tf_efficientnet_lite0', size=32, bs=4, freeze_epochs=1, epochs=1))
    run = new_run_dir('colours', tmp_path/'runs')
    log = []
    elog = EpochLog(run/'metrics.csv', echo=log.append); learn.add_cb(elog)
    with learn.no_bar(), learn.no_logging(): learn.fit_recipe()
    import matplotlib; backend = matplotlib.get_backend()
    res = save_run(learn, run, elog.rows, k=3)
    assert matplotlib.get_backend() == backend  # plots are saved without touching the user's backend
    names = {p.name for p in run.iterdir()}
    assert names == {'model.safetensors', 'recipe.json', 'metrics.csv', 'loss.png', 'confusion.png', 'top_losses.png',
                     'top_losses.csv'}
    m = pd.read_csv(run/'metrics.csv')
    assert list(m.stage) == ['frozen', 'unfrozen'] and list(m.epoch) == [0, 1]
    assert {'train_loss', 'valid_loss', 'accuracy', 'lr', 'seconds'} <= set(m.columns)
    assert len(log) == 2 and log[0].startswith('epoch  0 (frozen  )')
    tl = pd.read_csv(run/'top_losses.csv')
    assert list(tl.columns) == ['path', 'label', 'predicted', 'prob_label', 'loss'] and len(tl) == 3
    assert (tl.loss.diff().dropna() <= 0).all()
    info = json.loads((run/'recipe.json').read_text())
    assert info['vocab'] == ['blue', 'red'] and info['recipe']['arch'] == 'tf_efficientnet_lite0'
    assert Recipe.from_dict(info['recipe']).size == 32
    # the saved weights reproduce the learner's predictions
    model, vocab = load_run_model(run)
    xb, _ = dls.valid.one_batch()
    learn.model.eval()
    with torch.no_grad(): torch.testing.assert_close(model(xb.float()), learn.model(xb.float()), atol=1e-4, rtol=1e-4)
    assert res['accuracy'] == info['accuracy']

def test_run_dirs_never_reused(tmp_path):
    a = new_run_dir('x', tmp_path); (a/'keep.txt').write_text('mine')
    b = new_run_dir('x', tmp_path)
    assert a != b and (a/'keep.txt').read_text() == 'mine'

def test_out_is_a_file(tmp_path):
    (tmp_path/'f').write_text('')
    with pytest.raises(ValueError, match='is a file'): new_run_dir('x', tmp_path/'f')

def test_load_run_model_needs_a_finished_run(tmp_path):
    with pytest.raises(ValueError, match='recipe.json is missing'): load_run_model(tmp_path)

def test_top_losses_use_probability_of_label():
    p = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    df = top_losses(['a', 'b'], p, torch.tensor([1, 1]), ['x', 'y'])
    assert list(df.path) == ['a', 'b'] and df.prob_label.tolist() == pytest.approx([0.3, 0.6])
    assert list(df.predicted) == ['x', 'y']

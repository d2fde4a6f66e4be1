import numpy as np, pandas as pd, pytest
from pathlib import Path
from recipekit.data import read_source, image_dataloaders, split_source, digits_folder
from conftest import make_folder

def test_split_folders_with_val(tmp_path):
    make_folder(tmp_path, {'a': 3, 'b': 2}, split='train'); make_folder(tmp_path, {'a': 1, 'b': 2}, split='val')
    src = read_source(tmp_path)
    assert src.layout == 'split-folders'
    assert src.df.is_valid.sum() == 3 and len(src.df) == 8

def test_class_folders_stratified_split(tmp_path):
    make_folder(tmp_path, {'a': 20, 'b': 10})
    src = read_source(tmp_path)
    m = split_source(src, valid_pct=0.2, seed=1)
    assert m.sum() == 6
    assert src.df.label[m].value_counts().to_dict() == {'a': 4, 'b': 2}
    np.testing.assert_array_equal(m, split_source(src, valid_pct=0.2, seed=1))  # seeded
    assert not np.array_equal(m, split_source(src, valid_pct=0.2, seed=2))

def test_csv_with_and_without_is_valid(tmp_path):
    make_folder(tmp_path/'img', {'a': 4, 'b': 4})
    rows = [(f'img/{c}/{c}{i}.png', c, i == 0) for c in 'ab' for i in range(4)]
    pd.DataFrame(rows, columns=['path', 'label', 'is_valid']).to_csv(tmp_path/'l.csv', index=False)
    src = read_source(tmp_path/'l.csv')
    assert src.layout == 'csv' and src.df.is_valid.sum() == 2
    pd.DataFrame(rows, columns=['path', 'y', 'is_valid']).drop(columns='is_valid').to_csv(tmp_path/'m.csv', index=False)
    src = read_source(tmp_path/'m.csv', label_col='y')
    assert src.df.is_valid.isna().all() and split_source(src, 0.25).sum() == 2

@pytest.mark.parametrize('setup,msg', [
    (lambda p: p/'missing', 'does not exist'),
    (lambda p: (p/'empty').mkdir() or p/'empty', 'has no class folders'),
    (lambda p: make_folder(p/'one', {'cat': 3}), "Only one class"),
    (lambda p: make_folder(p/'e', {'cat': 3, 'dog': 2}) and ((p/'e'/'bird').mkdir() or p/'e'), "Class folder .*bird.* has no images"),
    (lambda p: (p/'f.txt').write_text('x') and p/'f.txt', 'is a file but not a CSV'),
])
def test_bad_sources(tmp_path, setup, msg):
    with pytest.raises(ValueError, match=msg): read_source(setup(tmp_path))

def test_flat_folder_of_images_gets_a_hint(tmp_path):
    make_folder(tmp_path, {'': 3})
    with pytest.raises(ValueError, match='holds 3 images directly: move them into one subfolder per class'): read_source(tmp_path)

def test_class_only_in_validation(tmp_path):
    make_folder(tmp_path, {'a': 3, 'b': 2}, split='train'); make_folder(tmp_path, {'a': 1, 'c': 2}, split='valid')
    with pytest.raises(ValueError, match=r"\['c'\] appear only in validation"): read_source(tmp_path)

def test_csv_missing_files_and_columns(tmp_path):
    pd.DataFrame({'path': ['x.png', 'y.png'], 'label': ['a', 'b']}).to_csv(tmp_path/'l.csv', index=False)
    with pytest.raises(ValueError, match="2 of 2 rows .* point at missing files"): read_source(tmp_path/'l.csv')
    pd.DataFrame({'file': ['x.png']}).to_csv(tmp_path/'k.csv', index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['path', 'label'\]"): read_source(tmp_path/'k.csv')

def test_unreadable_images_are_all_listed(tmp_path):
    make_folder(tmp_path, {'a': 4, 'b': 4})
    (tmp_path/'a'/'zero.png').write_bytes(b'')
    data = (tmp_path/'b'/'b0.png').read_bytes(); (tmp_path/'b'/'cut.png').write_bytes(data[:len(data)//3])
    with pytest.raises(ValueError) as e: image_dataloaders(tmp_path, size=16, bs=2)
    msg = str(e.value)
    assert msg.startswith('2 of 10 image files cannot be decoded') and 'zero.png' in msg and 'cut.png' in msg
    assert (tmp_path/'a'/'zero.png').exists()  # nothing the user had is touched

def test_single_image_class_cannot_be_split(tmp_path):
    make_folder(tmp_path, {'a': 5, 'b': 1})
    with pytest.raises(ValueError, match="Class 'b' has a single image"): image_dataloaders(tmp_path, size=16)

@pytest.mark.parametrize('kw,msg', [(dict(size=4), '`size` must be an int'), (dict(bs=0), '`bs` must be a positive int'),
                                    (dict(valid_pct=1.5), '`valid_pct` must be between 0 and 1')])
def test_bad_arguments(tmp_path, kw, msg):
    make_folder(tmp_path, {'a': 5, 'b': 5})
    with pytest.raises(ValueError, match=msg): image_dataloaders(tmp_path, **{'size': 16, **kw})

def test_dataloaders_shapes_and_validation_is_deterministic(tmp_path):
    make_folder(tmp_path, {'a': 6, 'b': 6}, size=(40, 30))
    dls = image_dataloaders(tmp_path, size=16, bs=4, valid_pct=0.25)
    assert (len(dls.train_ds), len(dls.valid_ds)) == (9, 3)
    x1, _ = dls.valid.one_batch(); x2, _ = dls.valid.one_batch()
    assert x1.shape == (3, 3, 16, 16) and (x1 == x2).all()

def test_digits_written_once(tmp_path):
    d = digits_folder(tmp_path/'digits')
    assert len(list(d.glob('*/*.png'))) == 1797
    f = d/'0'/'0000.png'; mtime = f.stat().st_mtime_ns
    digits_folder(tmp_path/'digits')
    assert f.stat().st_mtime_ns == mtime

def test_csv_empty_label_and_is_valid_values(tmp_path):
    make_folder(tmp_path/'img', {'a': 2, 'b': 2})
    paths = [f'img/{c}/{c}{i}.png' for c in 'ab' for i in range(2)]
    pd.DataFrame({'path': paths, 'label': ['a', None, 'b', 'b']}).to_csv(tmp_path/'e.csv', index=False)
    with pytest.raises(ValueError, match=r"1 rows .* have an empty `path` or `label`, first: line 3"): read_source(tmp_path/'e.csv')
    pd.DataFrame({'path': paths, 'label': list('aabb'), 'is_valid': ['no', 'yes', 'No', 'YES']}).to_csv(tmp_path/'y.csv', index=False)
    assert read_source(tmp_path/'y.csv').df.is_valid.tolist() == [False, True, False, True]
    pd.DataFrame({'path': paths, 'label': list('aabb'), 'is_valid': ['no', 'maybe', 'no', 'yes']}).to_csv(tmp_path/'m.csv', index=False)
    with pytest.raises(ValueError, match=r"`is_valid` .* must hold True/False .* got \['maybe'\]"): read_source(tmp_path/'m.csv')

def test_bs_capped_with_warning(tmp_path):
    make_folder(tmp_path, {'a': 5, 'b': 5})
    with pytest.warns(UserWarning, match='`bs`=32 is larger than the 8 training images'): dls = image_dataloaders(tmp_path, size=16, bs=32)
    assert dls.train.bs == 8 and len(dls.train) == 1

def test_seed_controls_the_shuffle(tmp_path):
    import random
    make_folder(tmp_path, {'a': 10, 'b': 10})
    def order(seed, global_seed):
        random.seed(global_seed)  # the global state must not matter
        dls = image_dataloaders(tmp_path, size=16, bs=4, seed=seed)
        return [dls.train.items.path.iloc[i] for i in dls.train.get_idxs()]
    assert order(0, global_seed=1) == order(0, global_seed=2)
    assert order(0, global_seed=1) != order(1, global_seed=1)

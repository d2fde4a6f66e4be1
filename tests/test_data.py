import numpy as np, pandas as pd, pytest
from pathlib import Path
from recipekit.images import RGBImageBlock
from recipekit.data import (GroupSplitter, StratifiedSplitter, keep_groups_together, straddling_groups, class_weights,
                            class_counts, read_source, image_dataloaders, split_source, digits_folder)
from conftest import make_folder, shared_data

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
    (lambda p: make_folder(p/'e', {'cat': 3, 'dog': 2}) and ((p/'e'/'bird').mkdir() or p/'e'),
     "Class folder .*bird.* has no images"),
    (lambda p: (p/'f.txt').write_text('x') and p/'f.txt', 'is a file but not a CSV'),
])
def test_bad_sources(tmp_path, setup, msg):
    with pytest.raises(ValueError, match=msg): read_source(setup(tmp_path))

def test_flat_folder_of_images_gets_a_hint(tmp_path):
    make_folder(tmp_path, {'': 3})
    with pytest.raises(ValueError, match='holds 3 images directly: move them into one subfolder per class'):
        read_source(tmp_path)

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
    assert msg.startswith('2 of 10 image files cannot be used') and 'zero.png' in msg and 'cut.png' in msg
    assert (tmp_path/'a'/'zero.png').exists()  # nothing the user had is touched

def test_single_image_class_cannot_be_split(tmp_path):
    make_folder(tmp_path, {'a': 5, 'b': 1})
    with pytest.raises(ValueError, match="Class 'b' has a single image"): image_dataloaders(tmp_path, size=16)

@pytest.mark.parametrize('kw,msg', [(dict(size=4), '`size` must be an int'),
                                    (dict(bs=0), '`bs` must be a positive int'),
                                    (dict(valid_pct=1.5), '`valid_pct` must be a number between 0 and 1')])
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
    with pytest.raises(ValueError, match=r"1 rows .* have an empty `path` or `label`, first: line 3"):
        read_source(tmp_path/'e.csv')
    pd.DataFrame({'path': paths, 'label': list('aabb'),
                  'is_valid': ['no', 'yes', 'No', 'YES']}).to_csv(tmp_path/'y.csv', index=False)
    assert read_source(tmp_path/'y.csv').df.is_valid.tolist() == [False, True, False, True]
    pd.DataFrame({'path': paths, 'label': list('aabb'),
                  'is_valid': ['no', 'maybe', 'no', 'yes']}).to_csv(tmp_path/'m.csv', index=False)
    with pytest.raises(ValueError, match=r"`is_valid` .* must hold True/False .* got \['maybe'\]"):
        read_source(tmp_path/'m.csv')

def test_bs_capped_with_warning(tmp_path):
    make_folder(tmp_path, {'a': 5, 'b': 5})
    with pytest.warns(UserWarning, match='`bs`=32 is larger than the 8 training images'):
        dls = image_dataloaders(tmp_path, size=16, bs=32)
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

def test_skip_bad_trains_without_them_and_says_how_many(tmp_path):
    make_folder(tmp_path, {'a': 4, 'b': 4})
    (tmp_path/'a'/'zero.png').write_bytes(b''); (tmp_path/'b'/'text.jpg').write_text('no')
    with pytest.warns(UserWarning, match='Skipped 2 unusable image files'):
        dls = image_dataloaders(tmp_path, size=16, bs=2, skip_bad=True)
    assert len(dls.train_ds) + len(dls.valid_ds) == 8
    assert (tmp_path/'a'/'zero.png').exists()

def test_skip_bad_csv_rows_of_missing_files(tmp_path):
    make_folder(tmp_path, {'a': 4, 'b': 4})
    rows = [(f'{c}/{c}{i}.png', c) for c in 'ab' for i in range(4)] + [('a/gone.png', 'a')]
    pd.DataFrame(rows, columns=['path', 'label']).to_csv(tmp_path/'l.csv', index=False)
    with pytest.raises(ValueError, match='1 of 9 CSV rows point at missing files'):
        image_dataloaders(tmp_path/'l.csv', size=16, bs=2)
    with pytest.warns(UserWarning, match='1 CSV rows of missing files'):
        dls = image_dataloaders(tmp_path/'l.csv', size=16, bs=2, skip_bad=True)
    assert len(dls.train_ds) + len(dls.valid_ds) == 8

@pytest.mark.parametrize('seed', range(5))
def test_group_splitter_never_straddles(seed):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({'label': rng.choice(list('abc'), 200), 'group': rng.integers(0, 40, 200)})
    for get_y in (None, 'label'):
        tr, va = GroupSplitter('group', valid_pct=0.2, seed=seed, get_y=get_y)(items)
        assert sorted(tr + va) == list(range(200)) and not set(items.group[tr]) & set(items.group[va])
        assert 0.1 < len(va)/200 < 0.3

def test_group_splitter_missing_keys_are_singletons():
    items = pd.DataFrame({'label': list('ab')*10, 'group': [None]*18 + ['g', 'g']})
    tr, va = GroupSplitter('group', valid_pct=0.5, seed=0, get_y='label')(items)
    assert len(va) in (9, 10, 11) and ({18, 19} <= set(tr) or {18, 19} <= set(va))

def test_group_splitter_works_in_a_datablock(tmp_path):
    from fastai.vision.all import DataBlock, CategoryBlock, ColReader
    make_folder(tmp_path, {'a': 6, 'b': 6})
    df = read_source(tmp_path).df.assign(group=[i//2 for i in range(12)])
    dsets = DataBlock(blocks=(RGBImageBlock(), CategoryBlock), get_x=ColReader('path'), get_y=ColReader('label'),
                      splitter=GroupSplitter('group', valid_pct=0.25, seed=0)).datasets(df)
    assert not set(df.group[dsets.splits[0]]) & set(df.group[dsets.splits[1]])

def test_stratified_splitter_keeps_each_class_share():
    items = pd.DataFrame({'label': ['a']*50 + ['b']*30 + ['c']*20})
    tr, va = StratifiedSplitter(0.2, seed=3)(items)
    assert items.label[va].value_counts().to_dict() == {'a': 10, 'b': 6, 'c': 4}
    # a function of one row works too
    assert StratifiedSplitter(0.2, seed=3, get_y=lambda r: r['label'])(items) == (tr, va)
    with pytest.raises(ValueError, match='single image'): StratifiedSplitter()(pd.DataFrame({'label': list('aab')}))
    with pytest.raises(TypeError, match='needs the items in a DataFrame'): StratifiedSplitter()(['x', 'y'])

def test_group_col_from_csv(tmp_path):
    make_folder(tmp_path, {'a': 6, 'b': 6})
    rows = [(f'{c}/{c}{i}.png', c, f'patient{i//2}{c}') for c in 'ab' for i in range(6)]
    pd.DataFrame(rows, columns=['path', 'label', 'patient']).to_csv(tmp_path/'l.csv', index=False)
    dls = image_dataloaders(tmp_path/'l.csv', size=16, bs=2, group_col='patient', valid_pct=0.25)
    tr, va = dls.train.items, dls.valid.items
    assert not set(tr.patient) & set(va.patient) and len(va) in (2, 4)
    with pytest.raises(ValueError, match="lacks the column"): read_source(tmp_path/'l.csv', group_col='nope')
    with pytest.raises(ValueError, match='needs a CSV source'): read_source(tmp_path/'a', group_col='patient')

def test_straddling_groups():
    assert straddling_groups([False, True, False, True, True, False], ['x', 'x', 'y', None, 'z', 1]) == ['x']
    assert straddling_groups([False, True], [None, None]) == []

def test_keep_groups_together_moves_to_train():
    m = keep_groups_together([False, True, False, True, True], ['x', 'x', 'y', 'z', 'z'])
    assert m.tolist() == [False, False, False, True, True]
    with pytest.raises(ValueError, match='3 keys but `is_valid` has 2'): keep_groups_together([True, False], [1, 2, 3])

@pytest.mark.parametrize('method,expected', [
    ('inverse', np.array([3, 30, 270])/101),            # 1/n scaled to sum to 3
    ('sqrt', np.array([1/np.sqrt(90), 1/3, 1])*3/(1/np.sqrt(90) + 1/3 + 1)),
    ('effective', None)])
def test_class_weights(method, expected):
    w = class_weights([90, 9, 1], method)
    if expected is None:  # Cui et al.: (1-beta)/(1-beta^n), beta=0.999
        e = (1-0.999)/(1-0.999**np.array([90, 9, 1])); expected = e*3/e.sum()
    np.testing.assert_allclose(w, expected, rtol=1e-6)  # timm computes in float32
    assert abs(w.sum() - 3) < 1e-5

def test_class_weights_bad_input():
    with pytest.raises(ValueError, match="`method` must be one of"): class_weights([1, 2], 'log')
    with pytest.raises(ValueError, match='at least one training image'): class_weights([3, 0])
    with pytest.raises(ValueError, match='`beta` must be in'): class_weights([3, 1], 'effective', beta=1.)
    with pytest.raises(ValueError, match=r'`beta` must be in \(0, 1\)'): class_weights([3, 1], 'effective', beta=0.)
    np.testing.assert_allclose(class_weights({'a': 2, 'b': 2}), [1, 1], rtol=1e-6)

def test_balanced_sampler_gives_each_class_a_third(tmp_path):
    make_folder(tmp_path/'train', {'a': 90, 'b': 9, 'c': 1}, size=(8, 8))
    make_folder(tmp_path/'valid', {'a': 3, 'b': 3, 'c': 3}, size=(8, 8))
    dls = image_dataloaders(tmp_path, size=8, bs=10, sampling='inverse', check=False)
    assert class_counts(dls).tolist() == [90, 9, 1]
    vocab = list(dls.vocab); labels = np.array([vocab.index(l) for l in dls.train.items.label])
    draws = np.concatenate([dls.train.get_idxs() for _ in range(30)])
    assert len(draws) == 3000
    shares = np.bincount(labels[draws], minlength=3)/3000
    assert np.abs(shares - 1/3).max() <= 0.03, shares
    assert dls.valid.get_idxs() == list(range(9))  # validation is never resampled
    ys = [int(y) for _, y in dls.train_ds]; assert len(ys) == 100
    with pytest.raises(ValueError, match='has 99 weights but there are 100 training images'):
        image_dataloaders(tmp_path, size=8, bs=10, sampling=np.ones(99), check=False)

def test_sampler_is_seeded(tmp_path):
    make_folder(tmp_path, {'a': 20, 'b': 4}, size=(8, 8))
    a, b = [image_dataloaders(tmp_path, size=8, bs=4, sampling='sqrt', check=False, seed=1).train.get_idxs()
            for _ in range(2)]
    assert a == b

def test_noisy_label_column_keeps_the_others():
    csv = shared_data('imagenette-160')/'noisy_imagenette.csv'
    src = read_source(csv, label_col='noisy_labels_25')
    assert list(src.df.columns) == ['path', 'label', 'is_valid', 'noisy_labels_0', 'noisy_labels_1', 'noisy_labels_5',
                                    'noisy_labels_25', 'noisy_labels_50']
    tr, va = src.df[~src.df.is_valid], src.df[src.df.is_valid]
    assert (len(tr), len(va)) == (9469, 3925)
    assert (0.2 < (tr.label != tr.noisy_labels_0).mean() < 0.3 and
            (va.label == va.noisy_labels_0).all())  # validation labels are clean
    small = src.df.groupby('is_valid').head(40).reset_index(drop=True)
    from recipekit.data import ImageSource
    dls = image_dataloaders(ImageSource(small, 'csv', csv), size=32, bs=8, check=False)
    assert ('noisy_labels_0' in dls.train.items.columns and
            (dls.train.items.label == dls.train.items.noisy_labels_25).all())

def test_csv_label_column_called_label_is_kept(tmp_path):
    make_folder(tmp_path, {'a': 2, 'b': 2})
    rows = [(f'{c}/{c}{i}.png', c, 'ba'['ab'.index(c)]) for c in 'ab' for i in range(2)]
    pd.DataFrame(rows, columns=['path', 'label', 'noisy']).to_csv(tmp_path/'l.csv', index=False)
    df = read_source(tmp_path/'l.csv', label_col='noisy').df
    assert df.label.tolist() == ['b', 'b', 'a', 'a'] and df.csv_label.tolist() == ['a', 'a', 'b', 'b']

def test_unknown_keyword_is_an_error_with_a_hint(tmp_path):
    make_folder(tmp_path, {'a': 4, 'b': 4})
    with pytest.raises(TypeError, match=r"unknown argument\(s\) 'valid_pc' \(did you mean 'valid_pct'\?\)"):
        image_dataloaders(tmp_path, valid_pc=0.5)

@pytest.mark.parametrize('kw,msg', [(dict(sampling=[1., float('nan')]*4), 'finite and non-negative'),
                                    (dict(sampling='INVERSE'), '`sampling` must be one of'),
                                    (dict(sampling={'a': 1}), 'a sequence of numbers'),
                                    (dict(crop_pct=0), '`crop_pct` must be in'),
                                    (dict(min_scale=2), '`min_scale` must be in'),
                                    (dict(seed='x'), '`seed` must be an int'),
                                    (dict(valid_pct='0.2'), 'a number between 0 and 1')])
def test_more_bad_arguments(tmp_path, kw, msg):
    make_folder(tmp_path, {'a': 5, 'b': 5})
    with pytest.raises((ValueError, TypeError), match=msg):
        image_dataloaders(tmp_path, size=8, bs=2, check=False, valid_pct=kw.pop('valid_pct', 0.2), **kw)
    with pytest.raises(ValueError, match='finite'): class_weights([10, float('nan')])

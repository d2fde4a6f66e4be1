import shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image, ImageFile
from recipekit.audit import audit_source, dataset_stats, FILE_PROBLEMS
from recipekit.cli import main
from conftest import shared_data

def photo(seed, size=(120, 90)):
    "A smooth random picture: unlike noise, it has the low frequencies of a photo"
    a = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(a).resize(size, Image.BICUBIC)

def _modes(d:Path, seed:int):
    "One clean image in each mode that needs converting, plus an EXIF-rotated JPEG"
    p = lambda k: photo(seed + k)
    rgba = p(0).convert('RGBA'); rgba.putalpha(128); rgba.save(d/'rgba.png')
    la = p(1).convert('LA'); la.putalpha(200); la.save(d/'la.png')
    pt = p(2).convert('P'); pt.info['transparency'] = 0; pt.save(d/'p_trans.png', transparency=0)
    p(3).convert('CMYK').save(d/'cmyk.jpg')
    Image.fromarray((np.asarray(p(4).convert('L'), np.uint16)*257)).save(d/'gray16.png')
    Image.fromarray(np.asarray(p(5).convert('L'), np.int32)*100).save(d/'int32.tif')
    exif = Image.Exif(); exif[0x0112] = 6; p(6).save(d/'exif.jpg', exif=exif, quality=95)
    return {'rgba.png': 'RGBA', 'la.png': 'LA', 'p_trans.png': 'P', 'cmyk.jpg': 'CMYK', 'gray16.png': 'I;16',
            'int32.tif': 'I'}

@pytest.fixture
def messy(tmp_path):
    "A split folder holding every problem of the issue once, with exactly known paths"
    r = tmp_path/'messy'
    for split, cls, n, s0 in [('train', 'ants', 10, 100), ('train', 'bees', 10, 200), ('valid', 'ants', 5, 300),
                              ('valid', 'bees', 5, 400)]:
        (r/split/cls).mkdir(parents=True)
        for i in range(n): photo(s0 + i).save(r/split/cls/f'{cls[0]}{i}.jpg', quality=92)
    modes = _modes(r/'train'/'ants', 500)
    cut = (r/'train'/'ants'/'a9.jpg').read_bytes(); (r/'train'/'ants'/'cut.jpg').write_bytes(cut[:len(cut)//2])
    (r/'train'/'ants'/'zero.jpg').write_bytes(b'')
    (r/'train'/'ants'/'text.png').write_text('a text file with an image extension')
    (r/'train'/'wasps').mkdir()
    (r/'valid'/'moths').mkdir(); photo(600).save(r/'valid'/'moths'/'m0.jpg')
    dups = [('train/ants/a0.jpg', 'valid/ants/copy_a0.jpg'), ('train/ants/a1.jpg', 'valid/ants/copy_a1.jpg'),
            ('train/ants/a2.jpg', 'valid/ants/copy_a2.jpg'), ('train/bees/b0.jpg', 'valid/bees/copy_b0.jpg'),
            ('train/bees/b1.jpg', 'valid/bees/copy_b1.jpg')]
    for src, dst in dups: shutil.copyfile(r/src, r/dst)
    near = [('train/bees/b5.jpg', 'valid/bees/near_b5.jpg'), ('train/bees/b6.jpg', 'valid/bees/near_b6.jpg')]
    for src, dst in near: Image.open(r/src).resize((84, 63), Image.BICUBIC).save(r/dst, quality=70)
    return r, modes, dups, near

def _rel(a, col='path', kinds=None):
    t = a.table()
    t = t[t.severity == 'problem'] if kinds is None else t[t.kind.isin(kinds)]
    return sorted(t[col])

def test_every_problem_reported_exactly(messy):
    r, modes, dups, near = messy
    a = audit_source(r)
    assert not a.ok
    t = a.table(); p = t[t.severity == 'problem']
    assert sorted(p.kind) == sorted(['truncated', 'empty-file', 'not-an-image', 'empty-class', 'valid-only-class'] +
                                    ['duplicate']*5 + ['near-duplicate']*2)
    by = {k: g for k, g in p.groupby('kind')}
    assert list(by['truncated'].path) == ['train/ants/cut.jpg']
    assert list(by['empty-file'].path) == ['train/ants/zero.jpg']
    assert list(by['not-an-image'].path) == ['train/ants/text.png']
    assert list(by['empty-class'].path) == ['train/wasps']
    assert list(by['valid-only-class'].detail) == ['moths']
    assert sorted(zip(by['duplicate'].other, by['duplicate'].path)) == sorted(dups)
    assert sorted(zip(by['near-duplicate'].other, by['near-duplicate'].path)) == sorted(near)

def test_no_false_alarms_on_clean_files(messy):
    r, modes, dups, near = messy
    a = audit_source(r)
    flagged = set(a.table().path) | set(a.table().other)
    clean = ([f'train/ants/a{i}.jpg' for i in range(3, 10)] + [f'train/bees/b{i}.jpg' for i in (2, 3, 4, 7, 8, 9)] +
             [f'valid/ants/a{i}.jpg' for i in range(5)] + ['train/ants/exif.jpg'])
    assert not flagged & set(clean)
    notes = a.table()[lambda t: t.severity == 'note']
    assert sorted(notes.kind) == ['mode']*6  # only the converted modes, nothing else
    assert (dict(zip(notes.path.map(lambda p: Path(p).name), notes.detail)) ==
            {k: f'stored as {v}' for k, v in modes.items()})

def test_counts_per_class_and_split(messy):
    a = audit_source(messy[0])
    c = a.counts
    assert c.loc['ants'].tolist() == [10 + 7, 5 + 3]  # 10 photos + 7 mode files (bad files not counted); 5 + 3 copies
    assert (c.loc['bees'].tolist() == [10, 5 + 2 + 2] and c.loc['wasps'].tolist() == [0, 0] and
            c.loc['moths'].tolist() == [0, 1])

def test_truncated_loading_never_turned_on(messy):
    audit_source(messy[0])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

def test_csv_rows_for_missing_files(tmp_path):
    for i in range(6): photo(i).save(tmp_path/f'{i}.jpg')
    rows = ([(f'{i}.jpg', 'ab'[i % 2], i >= 4) for i in range(6)] +
            [('gone1.jpg', 'a', False), ('sub/gone2.jpg', 'b', True)])
    pd.DataFrame(rows, columns=['path', 'label', 'is_valid']).to_csv(tmp_path/'l.csv', index=False)
    a = audit_source(tmp_path/'l.csv')
    assert list(a.problems.kind) == ['missing-file']*2
    assert a.table().path.tolist() == ['gone1.jpg', 'sub/gone2.jpg']
    assert a.counts.values.sum() == 6

def test_unsplit_copies_kept_on_one_side(tmp_path):
    for c, s0 in (('a', 0), ('b', 50)):
        (tmp_path/c).mkdir()
        for i in range(10): photo(s0 + i).save(tmp_path/c/f'{i}.jpg', quality=92)
    for i in range(4): shutil.copyfile(tmp_path/'a'/f'{i}.jpg', tmp_path/'a'/f'copy{i}.jpg')
    a = audit_source(tmp_path)
    assert a.ok and sorted(a.notes.kind) == ['copies']*4  # not a problem: recipekit makes this split
    src = a.usable_source()
    from recipekit.data import split_source
    for seed in range(5):
        m = dict(zip(src.df.path.map(lambda p: str(Path(p).relative_to(tmp_path))), split_source(src, 0.2, seed)))
        assert all(m[f'a/{i}.jpg'] == m[f'a/copy{i}.jpg'] for i in range(4))
        assert sum(m.values()) == 5  # still a fifth of 24 images, rounded to whole groups

def test_usable_source_policy(messy):
    r = messy[0]
    a = audit_source(r)
    with pytest.raises(ValueError, match=r"3 of \d+ image files cannot be used:\n") as e: a.usable_source()
    listed = [l.strip().split(': ')[0] for l in str(e.value).splitlines()[1:4]]
    assert sorted(Path(p).name for p in listed) == ['cut.jpg', 'text.png', 'zero.jpg']
    with pytest.raises(ValueError, match=r"\['moths'\] appear only in validation"): a.usable_source(skip_bad=True)
    shutil.rmtree(r/'valid'/'moths')
    a = audit_source(r)
    src = a.usable_source(skip_bad=True)
    assert len(src.df) == len(a.files) - 3 and int(src.df.is_valid.sum()) == 17  # 5+3 ants, 5+2+2 bees
    src = a.usable_source(skip_bad=True, dedupe=True)
    assert int(src.df.is_valid.sum()) == 17 - 7  # the 5 copies and 2 near copies moved into training
    assert not any(n.startswith(('copy', 'near')) for n in src.df.path[src.df.is_valid].map(lambda p: Path(p).name))

@pytest.mark.parametrize('args,code', [([], 1), (['--group-col', 'g'], 2)])
def test_check_exit_codes(messy, capsys, args, code):
    assert main(['check', str(messy[0])] + args) == code
    out = capsys.readouterr()
    if code == 1: assert '12 problems:' in out.out and 'duplicate' in out.out
    else: assert 'recipekit: error:' in out.err

def test_check_clean_data_exits_0_and_writes_table(tmp_path, capsys):
    for c, s0 in (('a', 0), ('b', 50)):
        (tmp_path/'d'/c).mkdir(parents=True)
        for i in range(4): photo(s0 + i).save(tmp_path/'d'/c/f'{i}.jpg')
    assert main(['check', str(tmp_path/'d'), '--out', str(tmp_path/'t.csv')]) == 0
    assert 'no problems' in capsys.readouterr().out and (tmp_path/'t.csv').is_file()
    assert main(['check', str(tmp_path/'d'), '--out', str(tmp_path/'t.csv')]) == 2  # never overwritten
    assert 'already exists' in capsys.readouterr().err

def test_check_console_script_exit_code(messy):
    exe = Path(sys.executable).parent/'recipekit'
    assert subprocess.run([str(exe), 'check', str(messy[0])], capture_output=True).returncode == 1

def test_hymenoptera_audit_is_clean():
    a = audit_source(shared_data('hymenoptera'))
    assert a.ok, a.summary()
    assert a.counts.sum().tolist() == [245, 153]
    assert a.counts.loc['ants'].tolist() == [124, 70] and a.counts.loc['bees'].tolist() == [121, 83]

def test_imagenette_audit_through_noisy_csv_is_clean():
    a = audit_source(shared_data('imagenette-160')/'noisy_imagenette.csv', label_col='noisy_labels_0')
    assert a.ok, a.summary()
    assert a.counts.sum().tolist() == [9469, 3925]

def test_dataset_stats_streaming_equals_all_pixels(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((5, 7), (12, 3), (9, 9))]
    for i, x in enumerate(arrays): Image.fromarray(x).save(tmp_path/f'{i}.png')
    allpix = np.concatenate([x.reshape(-1, 3) for x in arrays]).astype(np.float64)/255
    mean, std = dataset_stats(sorted(tmp_path.glob("*.png")), size=None)
    np.testing.assert_allclose(mean, allpix.mean(0), atol=1e-9)
    np.testing.assert_allclose(std, allpix.std(0), atol=1e-9)

def test_dataset_stats_use_training_images_only(tmp_path):
    from conftest import make_folder
    for split, col in (('train', 0), ('valid', 255)):
        for c in 'ab':
            (tmp_path/split/c).mkdir(parents=True)
            Image.new('RGB', (4, 4), (col,)*3).save(tmp_path/split/c/'x.png')
    assert dataset_stats(tmp_path) == ((0.0,)*3, (0.0,)*3)
    with pytest.raises(ValueError, match='No images'): dataset_stats([])

def _two_classes(root, n=6, s0=0):
    for c, off in (('a', 0), ('b', 100)):
        (root/c).mkdir(parents=True, exist_ok=True)
        for i in range(n): photo(s0 + off + i).save(root/c/f'{c}{i}.jpg', quality=92)
    return root

def test_image_dataloaders_keeps_copies_on_one_side(tmp_path):
    from recipekit.data import image_dataloaders
    d = _two_classes(tmp_path/'d', n=10)
    for i in range(4): shutil.copyfile(d/'a'/f'a{i}.jpg', d/'a'/f'copy{i}.jpg')
    Image.open(d/'b'/'b0.jpg').resize((84, 63)).save(d/'b'/'near0.jpg', quality=70)
    for seed in range(4):
        dls = image_dataloaders(d, size=16, bs=4, valid_pct=0.3, seed=seed)
        side = {Path(p).name: v for v, items in ((False, dls.train.items), (True, dls.valid.items)) for p in items.path}
        assert all(side[f'a{i}.jpg'] == side[f'copy{i}.jpg'] for i in range(4)) and side['b0.jpg'] == side['near0.jpg']

def test_label_conflicts_are_problems(tmp_path):
    d = _two_classes(tmp_path/'d', n=4)
    shutil.copyfile(d/'a'/'a0.jpg', d/'b'/'same_as_a0.jpg')
    a = audit_source(d)
    assert a.table()[['kind', 'path', 'other']].values.tolist() == [['label-conflict', 'b/same_as_a0.jpg', 'a/a0.jpg']]
    msg = r"1 files have two labels:\n.*same_as_a0.jpg: identical to .*a0.jpg, labelled 'a'"
    with pytest.raises(ValueError, match=msg):
        a.usable_source()
    rows = [('a/a1.jpg', 'a'), ('a/a1.jpg', 'b')] + [(f'b/b{i}.jpg', 'b') for i in range(3)]
    pd.DataFrame(rows, columns=['path', 'label']).to_csv(d/'l.csv', index=False)
    c = audit_source(d/'l.csv')
    assert c.problems.kind.tolist() == ['label-conflict'] and "['a', 'b']" in c.problems.detail.iloc[0]

def test_group_across_the_sources_own_split(tmp_path):
    d = _two_classes(tmp_path/'d', n=4)
    rows = [(f'{c}/{c}{i}.jpg', c, i == 3, f'p{i}' if i < 3 else 'p0') for c in 'ab' for i in range(4)]
    pd.DataFrame(rows, columns=['path', 'label', 'is_valid', 'patient']).to_csv(d/'g.csv', index=False)
    a = audit_source(d/'g.csv', group_col='patient')
    assert a.problems.kind.tolist() == ['group-across-split'] and "patient 'p0'" in a.problems.detail.iloc[0]
    src = a.usable_source(dedupe=True)
    assert int(src.df.is_valid.sum()) == 0 + 0  # both validation rows share patient p0 with training rows, so both move

def test_broken_link_hidden_files_and_macos_folders(tmp_path):
    d = _two_classes(tmp_path/'d', n=3)
    (d/'a'/'gone.jpg').symlink_to(tmp_path/'nowhere.jpg')
    (d/'a'/'._a0.jpg').write_bytes(b'\x00\x05\x16\x07')  # a macOS resource fork
    (d/'a'/'.hidden.jpg').write_bytes((d/'a'/'a1.jpg').read_bytes())
    (d/'__MACOSX'/'a').mkdir(parents=True); (d/'__MACOSX'/'a'/'._a1.jpg').write_bytes(b'\x00')
    a = audit_source(d)
    assert a.table()[['kind', 'path']].values.tolist() == [['missing-file', 'a/gone.jpg']]
    assert a.counts.index.tolist() == ['a', 'b'] and a.counts.unsplit.tolist() == [3, 3]

def test_class_with_only_unusable_files_is_empty(tmp_path):
    d = _two_classes(tmp_path/'d', n=3)
    (d/'c').mkdir(); (d/'c'/'x.jpg').write_text('no image')
    a = audit_source(d)
    assert sorted(a.problems.kind) == ['empty-class', 'not-an-image']
    assert "every file of class 'c' is unusable" in a.summary()

def test_save_to_missing_folder_is_one_message(tmp_path, capsys):
    d = _two_classes(tmp_path/'d', n=3)
    assert main(['check', str(d), '--out', str(tmp_path/'nodir'/'x.csv')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('recipekit: error: Cannot write the audit table') and 'Traceback' not in err

def test_split_folders_in_any_case_and_unused_test_folder(tmp_path):
    from recipekit.data import read_source
    for split in ('Train', 'VAL', 'test'): _two_classes(tmp_path/'d'/split, n=2, s0=hash(split) % 1000)
    with pytest.warns(UserWarning, match=r"\['test'\] not used"): src = read_source(tmp_path/'d')
    assert src.layout == 'split-folders' and src.classes == ['a', 'b'] and int(src.df.is_valid.sum()) == 4
    shutil.rmtree(tmp_path/'d'/'VAL')
    with pytest.raises(ValueError, match=r"split folders \['Train', 'test'\] but not both.*test/ to valid/"):
        read_source(tmp_path/'d')

def test_audit_argument_errors(tmp_path):
    d = _two_classes(tmp_path/'d', n=2)
    with pytest.raises(ValueError, match='`max_distance` must be a number >= 0'): audit_source(d, max_distance=-1)
    with pytest.raises(ValueError, match='`max_aspect` must be a number >= 1'): audit_source(d, max_aspect=0)
    with pytest.raises(TypeError, match='`source` must be a path'): audit_source(42)
    with pytest.raises(TypeError, match='`skip_bad` must be True or False'):
        audit_source(d).usable_source(skip_bad='no')

def test_dataset_stats_weighs_images_alike_by_default(tmp_path):
    Image.new('RGB', (900, 900), (0, 255, 0)).save(tmp_path/'big.png')
    Image.new('RGB', (30, 30), (255, 0, 0)).save(tmp_path/'small.png')
    mean, _ = dataset_stats([tmp_path/'big.png', tmp_path/'small.png'])
    np.testing.assert_allclose(mean, (0.5, 0.5, 0.0), atol=1e-6)
    mean, _ = dataset_stats([tmp_path/'big.png', tmp_path/'small.png'], size=None)
    assert mean[1] > 0.99  # by stored pixels the big green image wins

def test_dedupe_that_empties_validation_stops_before_a_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = _two_classes(tmp_path/'d', n=4)
    # image 3 of each class is in validation and shares its patient p0 with image 0
    rows = [(f'{c}/{c}{i}.jpg', c, i == 3, f'{c}p{i % 3}') for c in 'ab' for i in range(4)]
    pd.DataFrame(rows, columns=['path', 'label', 'is_valid', 'patient']).to_csv(d/'g.csv', index=False)
    fast = ['--arch', 'tf_efficientnet_lite0', '--size', '32', '--epochs', '0', '--freeze-epochs', '1', '--bs', '4']
    assert main(['train', str(d/'g.csv'), '--group-col', 'patient', '--dedupe'] + fast) == 2
    assert 'No validation images' in capsys.readouterr().err
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())
    assert main(['train', str(d/'g.csv'), '--group-col', 'patient'] + fast + ['--out', str(tmp_path/'o')]) == 0
    assert "warning: 2 groups are on both sides of the split (first: patient 'ap0'" in capsys.readouterr().out

def test_image_dataloaders_blocks_label_conflicts(tmp_path):
    from recipekit.data import image_dataloaders
    d = _two_classes(tmp_path/'d', n=4)
    shutil.copyfile(d/'a'/'a0.jpg', d/'b'/'same.jpg')
    msg = r"1 files have two labels:\n.*same.jpg: identical to .*a0.jpg, labelled 'a', but labelled 'b'"
    with pytest.raises(ValueError, match=msg):
        image_dataloaders(d, size=16, bs=2)
    rows = [('a/a1.jpg', 'a'), ('a/a1.jpg', 'b')] + [(f'{c}/{c}{i}.jpg', c) for c in 'ab' for i in (2, 3)]
    pd.DataFrame(rows, columns=['path', 'label']).to_csv(d/'l.csv', index=False)
    with pytest.raises(ValueError, match=r"a1.jpg: listed with labels \['a', 'b'\]"):
        image_dataloaders(d/'l.csv', size=16, bs=2)

def test_empty_files_are_nobodys_copy(tmp_path):
    d = _two_classes(tmp_path/'d', n=3)
    (d/'a'/'e.jpg').write_bytes(b''); (d/'b'/'e.jpg').write_bytes(b'')
    a = audit_source(d)
    assert sorted(a.problems.kind) == ['empty-file', 'empty-file'] and len(a.notes) == 0

def test_broken_link_in_a_folder_is_an_unusable_file_not_a_csv_row(tmp_path):
    d = _two_classes(tmp_path/'d', n=3)
    (d/'a'/'gone.jpg').symlink_to(tmp_path/'nowhere.jpg')
    msg = r"1 of 7 image files cannot be used:\n.*gone.jpg: the file does not exist"
    with pytest.raises(ValueError, match=msg) as e:
        audit_source(d).usable_source()
    assert 'CSV' not in str(e.value).split('\n')[0]

def test_dataset_stats_each_image_counts_once_whatever_its_shape(tmp_path):
    Image.new('RGB', (3000, 60), (0, 255, 0)).save(tmp_path/'wide.png')
    Image.new('RGB', (100, 80), (0, 0, 255)).save(tmp_path/'b.png')
    mean, _ = dataset_stats([tmp_path/'wide.png', tmp_path/'b.png'])
    np.testing.assert_allclose(mean, (0.0, 0.5, 0.5), atol=1e-6)

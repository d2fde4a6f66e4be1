import os, warnings
from pathlib import Path
import numpy as np, pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2]/'shared'/'data'

def shared_data(name):
    "Path of a shared data set, skipping the test with the reason when it is absent"
    p = SHARED/name
    if not p.is_dir():
        pytest.skip(f"needs the shared data set {name} at {p} (see ../shared/data/README.md); "
                    "it is not on this machine")
    return p

def make_folder(root, counts, size=(24, 20), split=None, seed=0):
    "Class folders of random PNGs: `counts` maps class name -> number of images"
    rng = np.random.default_rng(seed)
    for c, n in counts.items():
        d = Path(root)/(split or '')/c; d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(d/f'{c}{i}.png')
    return Path(root)

def make_colours(root, n=8, size=32, seed=0):
    "Two easy classes, red and blue images with noise"
    rng = np.random.default_rng(seed)
    for c, col in (('red', (200, 30, 30)), ('blue', (30, 30, 200))):
        (Path(root)/c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = (np.array(col) + rng.integers(-30, 30, (size, size, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(Path(root)/c/f'{i}.png')
    return Path(root)

@pytest.fixture(autouse=True)
def _quiet_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv('RECIPEKIT_CACHE', str(tmp_path/'cache'))
    warnings.filterwarnings('ignore', message='.*torch.jit.script.*')

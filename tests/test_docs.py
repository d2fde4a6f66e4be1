import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_index_notebook_matches_readme():
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    md = '\n\n'.join(''.join(c['source']).strip() for c in nb['cells'] if c['cell_type'] == 'markdown')
    assert md.strip() == (ROOT/'README.md').read_text().strip()

def test_every_module_has_a_notebook_and_summary():
    mods = sorted(p.stem for p in (ROOT/'recipekit').glob('*.py') if not p.stem.startswith('_'))
    nbs = {json.loads(p.read_text())['cells'][0]['source'][0].split()[-1]: p for p in (ROOT/'nbs').glob('[0-9]*.ipynb')}
    assert sorted(nbs) == mods
    for m, p in nbs.items():
        first_md = next(c for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'markdown')
        assert '\n> ' in ''.join(first_md['source']), f"{p.name} lacks its > summary line"

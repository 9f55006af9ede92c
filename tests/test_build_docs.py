"How the docs build chooses its path, and the one `_quarto.yml`."
import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_one_quarto_yml():
    "nbdev reads nbs/_quarto.yml; it must be the top-level file itself, not a copy that can drift."
    link = ROOT/'nbs'/'_quarto.yml'
    assert link.is_symlink() and link.resolve() == (ROOT/'_quarto.yml').resolve()


def _fake_tool(folder, name, body):
    p = folder/name
    p.write_text(f'#!/bin/sh\n{body}\n')
    p.chmod(0o755)


def test_quarto_present_means_nbdev_docs(tmp_path):
    "With `quarto` on PATH the build is nbdev's own `nbdev_docs` (faked here, as Quarto is not installed)."
    bin_ = tmp_path/'bin'
    bin_.mkdir()
    _fake_tool(bin_, 'quarto', 'exit 0')
    _fake_tool(bin_, 'nbdev_docs', f'echo nbdev_docs > "{tmp_path}/called"')
    env = {**os.environ, 'PATH': f'{bin_}{os.pathsep}{os.environ["PATH"]}'}
    res = subprocess.run([sys.executable, 'tools/build_docs.py'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path/'called').read_text().strip() == 'nbdev_docs'
    assert '_docs' in res.stdout and 'index.html' in res.stdout


def test_links_to_private_helpers_become_plain_code():
    "nbdev links backticked private names to anchors no page has; the offline build keeps them as code, unlinked."
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools'/'build_docs.py')
    build_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_docs)
    site = 'https://klem-nb.github.io/klem_nb'
    md = (f'[`_elbo_rows`]({site}/free_energy.html#_elbo_rows), [`elbo`]({site}/free_energy.html#elbo), '
          '[the E-step](03_e_step.ipynb#the-posterior)')
    assert build_docs.fix_links(md, {'03_e_step.ipynb': 'e_step.html'}, site) == \
        '`_elbo_rows`, [`elbo`](free_energy.html#elbo), [the E-step](e_step.html#the-posterior)'

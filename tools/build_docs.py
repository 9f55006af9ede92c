#!/usr/bin/env python
"""Build klem_nb's documentation site into `_docs/` and regenerate README.md from `nbs/index.ipynb`.

Where Quarto is installed this is nbdev's own `nbdev_docs`. Without Quarto (or with `--offline`) the same
site is built from nbdev's processed notebooks (`_proc/`, written by `nbdev_proc_nbs`'s machinery): nbconvert
turns each processed notebook into Markdown with its figures, and pandoc turns that into an HTML page with
MathML equations (no network needed), using the sidebar order nbdev writes to `sidebar.yml`.
"""
import argparse, json, re, shutil, subprocess, sys
from pathlib import Path

import yaml

SITE = Path(__file__).parent/'site'   # pandoc template, Lua filter and CSS of the offline site


def process_notebooks():
    "Run nbdev's docs pre-processing (`nbdev_proc_nbs` without its Quarto install step); return config and `_proc`."
    from nbdev.config import get_config
    from nbdev.doclinks import _build_modidx
    from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
    from nbdev.serve import proc_nbs
    cfg = get_config()
    refresh_quarto_yml()
    _build_modidx()
    nbdev_sidebar.__wrapped__()
    return cfg, proc_nbs(cfg.nbs_path, force=True)


def sidebar_notebooks(proc):
    "Notebook paths in the order of nbdev's `sidebar.yml` (sections flattened), index first."
    def flat(items):
        for it in items:
            if isinstance(it, str): yield it
            elif isinstance(it, dict): yield from flat(it.get('contents', []))
    side = yaml.safe_load((proc/'sidebar.yml').read_text())['website']['sidebar']['contents']
    nbs = [n for n in flat(side) if n.endswith('.ipynb')]
    return sorted(nbs, key=lambda n: n != 'index.ipynb')


def split_frontmatter(nb):
    "Remove nbdev's YAML front-matter raw cell from `nb` and return it as a dict."
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.startswith('---'):
            del nb.cells[i]
            return yaml.safe_load(c.source.strip().strip('-')) or {}
    return {}


_directive = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*)$')

def apply_cell_options(nb):
    "Honour the Quarto cell options that nbdev leaves in processed notebooks (include, echo, output)."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            lines = c.source.splitlines()
            opts = dict(m.groups() for m in map(_directive.match, lines) if m)
            if opts.get('include') == 'false': continue
            c.source = '\n'.join(l for l in lines if not _directive.match(l)).strip()
            if opts.get('echo') == 'false' or not c.source: c.metadata['transient'] = {'remove_source': True}
            if opts.get('output') == 'false': c.outputs = []
        cells.append(c)
    nb.cells = cells


def pandoc(args, text):
    "Run the pandoc that `pypandoc-binary` ships; its warnings (e.g. TeX it cannot convert) go to stderr."
    import pypandoc
    res = subprocess.run([pypandoc.get_pandoc_path(), *args], input=text, capture_output=True, text=True, check=True)
    if res.stderr: print(res.stderr, file=sys.stderr, end='')
    return res.stdout


def notebook_markdown(nb, files_dir):
    "Markdown for a processed notebook; its figures are written into `files_dir`."
    from nbconvert import MarkdownExporter
    nb.metadata.setdefault('language_info', {'name': 'python'})   # nbdev_clean drops it; code blocks need it
    body, res = MarkdownExporter().from_notebook_node(nb, resources={'output_files_dir': files_dir.name})
    for name, data in res.get('outputs', {}).items():
        (files_dir.parent/name).parent.mkdir(parents=True, exist_ok=True)
        (files_dir.parent/name).write_bytes(data)
    return body


def fix_links(md, pages, site_url, prefix=''):
    "Point links to notebooks at their pages (under `prefix`), and absolute links into this site at `prefix`."
    md = md.replace(site_url.rstrip('/') + '/', prefix)
    # nbdev links every backticked name of its index, private helpers too, to `page#_name`; no page has such an
    # anchor (private names get no show_doc section, and pandoc identifiers never start with `_`): keep the code only
    md = re.sub(r'\[(`_\w+`)\]\([^)\s]*#_\w+\)', r'\1', md)
    return re.sub(r'\]\(([\w.-]+)\.ipynb(#[^)]*)?\)',
                  lambda m: f"]({prefix}{pages.get(m[1] + '.ipynb', m[1] + '.html')}{m[2] or ''})", md)


def page_name(nb_name, fm):
    return fm.get('output-file') or Path(nb_name).stem + '.html'


def offline_build(out, readme):
    import nbformat
    cfg, proc = process_notebooks()
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = sidebar_notebooks(proc)
    nbs = {n: nbformat.read(proc/n, as_version=4) for n in names}
    fms = {n: split_frontmatter(nb) for n, nb in nbs.items()}
    pages = {n: page_name(n, fms[n]) for n in names}
    site_url = cfg.doc_host + cfg.doc_baseurl
    nav = '\n'.join(f'<li><a href="{pages[n]}" data-page="{pages[n]}">{fms[n].get("title", Path(n).stem)}</a></li>'
                    for n in names)
    for n in names:
        nb = nbs[n]
        apply_cell_options(nb)
        stem = Path(pages[n]).stem
        md = fix_links(notebook_markdown(nb, out/f'{stem}_files'), pages, site_url)
        meta = ['-M', f'pagetitle={fms[n].get("title", stem)} – {cfg.title}',
                '-V', f'site-title={cfg.title}', '-V', f'current={pages[n]}', '-V', f'nav={nav}']
        for k in ('title', 'description'):   # metadata given on the command line is plain text: drop code marks
            if fms[n].get(k): meta += ['-M', f"{k}={fms[n][k].replace('`', '')}"]
        html = pandoc(['-f', 'markdown-implicit_figures', '-t', 'html5', '--standalone', '--mathml', '--toc', '--toc-depth=3',
                       '--template', str(SITE/'template.html'), '--lua-filter', str(SITE/'tags.lua'), *meta], md)
        (out/pages[n]).write_text(html)
        if n == cfg.get('readme_nb', 'index.ipynb') and readme:
            write_readme(nb, fms[n], Path(readme), pages, site_url)
    for css in (SITE/'site.css', cfg.nbs_path/'styles.css'):
        if css.exists(): shutil.copy(css, out/css.name)
    (out/'.nojekyll').touch()
    return out


def write_readme(nb, fm, readme, pages, site_url):
    "README.md (GitHub-flavoured Markdown) from the processed index notebook, as `nbdev_readme` makes it."
    head = f"# {fm.get('title', '')}\n\n" + (f"> {fm['description']}\n\n" if fm.get('description') else '')
    md = fix_links(notebook_markdown(nb, readme.parent/'index_files'), pages, site_url, site_url.rstrip('/') + '/')
    gfm = pandoc(['-f', 'markdown', '-t', 'gfm', '--wrap=none'], head + md)
    readme.write_text(gfm)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--offline', action='store_true', help='build without Quarto even if it is installed')
    ap.add_argument('--out', default=None, help='output folder of the offline build (default: settings doc_path)')
    ap.add_argument('--readme', default='README.md', help="where the offline build writes README.md ('' for nowhere)")
    a = ap.parse_args(argv)
    if shutil.which('quarto') and not a.offline:
        subprocess.run(['nbdev_docs'], check=True)
        out = Path('_docs')
    else:
        from nbdev.config import get_config
        out = offline_build(a.out or get_config().doc_path, a.readme)
    print(f'Docs site built: open {(Path(out)/"index.html").resolve()} in a browser.')


if __name__ == '__main__': main()

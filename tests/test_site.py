"""The documentation site, built without Quarto, opened page by page in headless Chromium.

Needs Chromium and ChromeDriver (Debian: `apt-get install chromium chromium-driver`). Without them the browser
tests skip, saying so, unless KLEM_REQUIRE_BROWSER=1 (as in `.ci/run`), where a missing browser is a failure.
"""
import functools, http.server, json, os, re, shutil, subprocess, sys, threading, urllib.parse, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(filter(None, map(shutil.which, ['chromium', 'chromium-browser', 'google-chrome'])), None)
DRIVER = shutil.which('chromedriver')
CHROME_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--disable-quic', '--window-size=1280,1000']


def notebooks():
    "The notebooks that should each become a page (nbdev's glob: no `_` or `.` prefixes)."
    return sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "Build the site offline into a temporary folder, with the README next to it."
    tmp = tmp_path_factory.mktemp('site')
    subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--offline', '--out', str(tmp/'_docs'),
                    '--readme', str(tmp/'README.md')], cwd=ROOT, check=True, capture_output=True)
    return tmp


def test_one_page_per_notebook_in_sidebar_order(built):
    html = (built/'_docs'/'index.html').read_text()
    nav = re.search(r'<nav class="sidebar".*?</nav>', html, re.S)[0]
    pages = re.findall(r'href="([^"]+\.html)"', nav)
    assert len(pages) == len(notebooks()) and pages[0] == 'index.html'
    assert all((built/'_docs'/p).exists() for p in pages)
    numbered = [n for n in notebooks() if n[0].isdigit()]
    assert pages[1:] == [re.sub(r'^\d+[a-z]?_', '', Path(n).stem) + '.html' for n in numbered]


def test_readme_is_generated_from_index(built):
    "README.md is committed as the docs build writes it from nbs/index.ipynb: regenerate and compare."
    assert (ROOT/'README.md').read_text() == (built/'README.md').read_text(), \
        'README.md is stale: run `python tools/build_docs.py` and commit README.md'


def test_api_reference_present(built):
    html = (built/'_docs'/'divergences.html').read_text()
    for name in ['entropy', 'cross_entropy', 'kl_divergence', 'kl_mvn']:
        assert re.search(rf'<h3[^>]*>{name}</h3>', html), f'show_doc section for {name} missing'


@pytest.fixture(scope='module')
def server(built):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built/'_docs'))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        msg = 'Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)'
        if os.environ.get('KLEM_REQUIRE_BROWSER') == '1': pytest.fail(msg + ', and KLEM_REQUIRE_BROWSER=1')
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROME_FLAGS + [f'--user-data-dir={tmp_path_factory.mktemp("chrome")}']: opts.add_argument(f)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    yield driver
    driver.quit()


PAGE_REPORT = r"""
const visible = document.querySelector('main').cloneNode(true);
visible.querySelectorAll('pre, code, math, script, style').forEach(e => e.remove());
return {
  maths: [...document.querySelectorAll('math')].map(m => m.getBoundingClientRect().height),
  text: visible.textContent,
  broken_images: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  images: document.images.length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
};
"""


@pytest.fixture(scope='module')
def reports(built, server, browser):
    "Open every page once; collect console messages, equations, images and links."
    out = {}
    for page in sorted(p.name for p in (built/'_docs').glob('*.html')):
        browser.get(server + page)
        rep = browser.execute_script(PAGE_REPORT)
        rep['console'] = [l for l in browser.get_log('browser') if l['level'] in ('SEVERE', 'WARNING')]
        out[page] = rep
    return out


def test_pages_load_without_console_errors(reports):
    bad = {p: r['console'] for p, r in reports.items() if r['console']}
    assert not bad, json.dumps(bad, indent=1)


RAW_TEX = re.compile(r'\$\$|\\(?:frac|sum|log|mathrm|mathbb|begin|end|tag|theta|parallel)\b|\$[^$\s][^$]{0,80}\$')

def test_equations_render_as_math(reports):
    for page, r in reports.items():
        raw = RAW_TEX.findall(r['text'])
        assert not raw, f'{page}: raw TeX left in the page text: {raw[:5]}'
        assert all(h > 0 for h in r['maths']), f'{page}: a math element has no height (not rendered)'
    for page in ['index.html', 'divergences.html']:
        assert len(reports[page]['maths']) > 0, f'{page} shows no equations'


def test_images_load(reports):
    for page, r in reports.items(): assert not r['broken_images'], f"{page}: broken images {r['broken_images']}"
    assert reports['divergences.html']['images'] > 0, 'the divergences page should show its figure'


def test_internal_links_resolve(reports, server):
    ids = {page: set(r['ids']) for page, r in reports.items()}
    for page, r in reports.items():
        for href in r['links']:
            if not href.startswith(server): continue
            url = urllib.parse.urlsplit(href)
            target = url.path.lstrip('/') or 'index.html'
            assert target in reports, f'{page}: link to missing page {href}'
            with urllib.request.urlopen(href.split('#')[0]) as resp: assert resp.status == 200
            if url.fragment:
                frag = urllib.parse.unquote(url.fragment)
                assert frag in ids[target], f'{page}: link to missing anchor #{frag} in {target}'

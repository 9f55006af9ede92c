"Package metadata comes from settings.ini, nbdev 2's single source of project settings."
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).parent
parser = ConfigParser(delimiters=['='])
parser.read(here/'settings.ini', encoding='utf-8')
cfg = parser['DEFAULT']

licenses = {'apache2': 'Apache-2.0'}   # SPDX expressions, which replace the deprecated licence classifiers
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
py_versions = ['3.10', '3.11', '3.12', '3.13']

lic = licenses[cfg['license'].lower()]
min_python = cfg['min_python']
status = int(cfg['status'])
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
dask_requirements = cfg.get('dask_requirements', '').split()   # klem_nb[dask]: fits on Dask arrays
hmm_requirements = cfg.get('hmm_requirements', '').split()     # klem_nb[hmm]: compiled HMM E-step (numba)
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]
package_data = {}
for line in cfg.get('package_data', '').split('\n'):
    if ':' in line:
        pkg, globs = line.split(':', 1)
        package_data[pkg.strip()] = globs.split()

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license=lic,
    license_files=['LICENSE'],
    url=cfg['git_url'],
    project_urls={'Documentation': cfg['doc_host'] + cfg['doc_baseurl'], 'Source': cfg['git_url'],
                  'Issues': cfg['git_url'] + '/issues'},
    keywords=cfg['keywords'].split(),
    classifiers=[f'Development Status :: {status} - {statuses[status-1]}',
                 f'Intended Audience :: {cfg["audience"]}',
                 f'Natural Language :: {cfg["language"]}',
                 'Topic :: Scientific/Engineering :: Mathematics'] +
                [f'Programming Language :: Python :: {v}' for v in py_versions
                 if tuple(map(int, v.split('.'))) >= tuple(map(int, min_python.split('.')))],
    packages=setuptools.find_namespace_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*'],
                                                exclude=['*.__pycache__']),   # klem_nb.data holds only CSVs
    include_package_data=True,
    package_data=package_data,
    python_requires=f'>={min_python}',
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'dask': dask_requirements, 'hmm': hmm_requirements},
    entry_points={'console_scripts': scripts, 'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
    zip_safe=False,
)

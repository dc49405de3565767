# Sphinx configuration for the tripleo-ipsec documentation.

project = 'tripleo-ipsec'
copyright = 'tripleo-ipsec developers'

extensions = []
try:
    import openstackdocstheme  # noqa: F401
except ImportError:
    html_theme = 'alabaster'
else:
    extensions.append('openstackdocstheme')
    html_theme = 'openstackdocs'
    openstackdocs_repo_name = 'openstack/tripleo-ipsec'
    openstackdocs_bug_project = 'tripleo'
    openstackdocs_bug_tag = 'ipsec'
    openstackdocs_use_storyboard = False

master_doc = 'index'
exclude_patterns = []
pygments_style = 'native'

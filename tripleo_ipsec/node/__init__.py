"""What runs on the nodes: standard library only.

The Ansible role links these modules as its ``module_utils``
(``tripleo_ipsec_<module>``), so a node needs nothing from pip.  The
product imports them from here.
"""

"""Encrypt every network of a TripleO overcloud with IPsec (libreswan).

The pipeline, one module a stage, each taking one plain data structure and
returning one::

    stack outputs --topology--> Topology --plan--> Plan --render--> files

``names`` owns every name (conn, file, pacemaker resource), ``keys`` the
master key and the per-pair key derivation, ``options`` the operator's knobs.
"""

"""The meta-filesystem: files as content-addressed blocks, trees as snapshots, and
labels as signed, versioned pointers from colony paths to snapshots.

Modules, from the bottom up:

- ``cid``: the one CID form a colony uses (CIDv1, sha2-256, base32; raw or dag-cbor)
- ``chunking``: fixed-size and content-defined (FastCDC-style) streaming chunkers
- ``manifest``: FileManifest and DirectorySnapshot, canonical CBOR
- ``labels``: Label (signed version of a path) and LabelLog (deterministic heads,
  conflicts kept until merged; a pure state machine)
- ``blockstore``: blocks on disk with an SQLite index, pins, gc, quota, labels
- ``importer``: add_path / export / commit_label / publish
- ``merge``: three-way merge of snapshots to re-apply a losing label version
- ``exchange``: the block protocol between members (server, parallel verified fetcher)

The daemon's side (labels shared with members, DHT providers, the fs operations and
the sync directives around every run) is ``colonyp2p.node.fs``; see docs/MFS.md.
"""

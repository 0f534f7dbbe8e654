"""The store stage: the only code in offerd that touches LMDB."""

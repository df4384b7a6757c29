"""The start of a child process's script in which faiss cannot be imported, as in the api
function's package in AWS; append what the child should do."""

BLOCK_FAISS = r"""
import importlib.abc, json, sys


class NoFaiss(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoFaiss())
"""

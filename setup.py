"""The build's one step beyond setuptools: the gRPC code (offerd/v1/*_pb2*.py) generated from
protos/ into every wheel, sdist and editable install, so an install from a fresh clone has it.
Everything else about the package is in pyproject.toml."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "offerd/v1/offerd.proto"


def generate(out: str) -> None:
    """protoc with the gRPC plugin, as the Makefile runs it: imports resolve as offerd.v1."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise SystemExit("building offerd needs grpcio-tools (pyproject.toml's [build-system] requires it; "
                         "with --no-build-isolation, pip install it first)") from None
    import importlib.resources
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    protos = os.path.join(HERE, "protos")
    args = ["protoc", f"-I{protos}", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", os.path.join(protos, PROTO)]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc could not compile {os.path.join(protos, PROTO)}")


class BuildPy(build_py):
    def run(self):
        super().run()
        if os.path.exists(os.path.join(HERE, "protos", PROTO)):
            # an editable install imports from src/, so the code goes there (as `make gen` puts it)
            generate(os.path.join(HERE, "src") if self.editable_mode else self.build_lib)
        elif not os.path.exists(os.path.join(self.build_lib, "offerd", "v1", "offerd_pb2.py")):
            raise SystemExit(f"protos/{PROTO} is missing and no generated offerd_pb2.py was found")


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        out = os.path.join(base_dir, "src")
        v1 = os.path.join(out, "offerd", "v1")
        for name in os.listdir(v1):  # copies of a checkout's own may be hard links to it: never write through
            if "_pb2" in name:
                os.remove(os.path.join(v1, name))
        generate(out)  # the sdist carries the code too, for tools that read its source without building it


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})

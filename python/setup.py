"""Builds kiln._kiln with the project's CMake (the repository root is this folder's parent).

    pip install --no-build-isolation ./python       (a venv, or --break-system-packages)
    pip wheel --no-build-isolation --no-deps ./python -w dist

CMAKE_ARGS adds CMake options (e.g. -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DKILN_NATIVE=OFF for a
wheel meant for other machines); KILN_BUILD_JOBS sets the parallel build jobs (default 2).
"""

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        target = pathlib.Path(self.get_ext_fullpath(ext.name)).resolve()
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                     "-DKILN_PYTHON=ON", "-DKILN_BUILD_TESTS=OFF", "-DKILN_BUILD_BENCH=OFF",
                     f"-DPython_EXECUTABLE={sys.executable}"]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "_kiln", "-j",
                        os.environ.get("KILN_BUILD_JOBS", "2")], check=True)
        built = next((build / "python" / "kiln").glob("_kiln*.so"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


setup(
    packages=["kiln", "kiln.keras"],
    ext_modules=[Extension("kiln._kiln", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)

#!/usr/bin/python3
"""Checks .onnx files with ONNX's own checker (full_check: strict shape inference too) and
prints one JSON line per file: the opset, node counts by op type, initializers and the elements
of floating initializers. Exit 0 when every file passes, 1 otherwise, 77 without python3-onnx.
Used by tests/onnx/export_test.cc; run it by hand the same way: export_check.py a.onnx ..."""
import json
import sys

try:
    import onnx
    from onnx import numpy_helper
except ImportError as e:  # the Debian package python3-onnx
    print(f"export_check.py: python3-onnx is not installed ({e})", file=sys.stderr)
    sys.exit(77)

failed = False
for path in sys.argv[1:]:
    try:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # report every file, then fail
        print(json.dumps({"file": path, "ok": False, "error": str(e)[:2000]}))
        failed = True
        continue
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    float_params = 0
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype.kind == "f":
            float_params += a.size
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.input) + list(m.graph.output)]
    print(json.dumps({"file": path, "ok": True, "opset": m.opset_import[0].version,
                      "ops": ops, "initializers": len(m.graph.initializer),
                      "float_params": int(float_params), "port_dims": dims}))
sys.exit(1 if failed else 0)

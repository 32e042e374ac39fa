"""``handgrad export``: a model file as an ONNX graph that reads raw features (see ``docs/onnx.md``)."""

import sys
from pathlib import Path

from handgrad.cli import console
from handgrad.cli.common import check_writable
from handgrad.cli.interrupts import guard
from handgrad.io.files import atomic_write
from handgrad.io.onnx import INSTALL, to_onnx

FORMATS = ("onnx",)

EXAMPLES = f"""\
examples:
  handgrad export handgrad-out/model.npz --format onnx --out model.onnx
  handgrad export runs/mnist/model.npz                  writes runs/mnist/model.onnx

The graph holds the model's preprocessing, every layer in inference mode
(dropout drops nothing, batch norm uses its running statistics) and the
output head of its task: input X (rows of raw features, float32 for a float32
model); outputs label and probabilities (classification, multilabel) or
variable (regression, in the target's units).  ONNX opset 20.  Needs the
onnx package: {INSTALL}.  --out is written atomically: an existing file is
replaced only by a complete new one.
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "export", parents=parents, help="write a model as an ONNX graph that takes raw features",
        description="Export a model file (or a saved estimator) as an ONNX graph: its preprocessing, network "
                    "and outputs, for ONNX Runtime and other ONNX tools.",
        epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model (or checkpoint) file written by handgrad train, or hg.save")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="the format to write (default: onnx)")
    p.add_argument("--out", metavar="PATH", help="where to write it (default: MODEL with the suffix .onnx)")
    p.set_defaults(run=run_export)


def run_export(args):
    out = Path(args.out) if args.out else Path(args.model).with_suffix(".onnx")
    check_writable(out, "--out")
    model = to_onnx(args.model)
    data = model.SerializeToString()
    with guard.deferred():
        atomic_write(out, lambda f: f.write(data), make_folder=True)
    print(f"{out} written: ONNX opset {model.opset_import[0].version}, {_signature(model.graph)}", file=sys.stderr)
    return 0


def _signature(graph):
    """``input X float32 (N, 64); outputs label int64 (N,), probabilities float32 (N, 10)``."""
    from onnx.helper import tensor_dtype_to_np_dtype

    def describe(value):
        tensor = value.type.tensor_type
        dtype = tensor_dtype_to_np_dtype(tensor.elem_type)
        dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
        shape = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
        return f"{value.name} {'string' if dtype.kind == 'O' else dtype} {shape}"

    inputs = ", ".join(describe(v) for v in graph.input)
    outputs = ", ".join(describe(v) for v in graph.output)
    return f"input {inputs}; outputs {outputs}"

// The `kiln` program as a function, so tests can run it without a process:
//   kiln train   [--model mlp|cnn | --config model.json | --resume m.kiln] [--epochs N]
//                [--batch-size B] [--optimizer adam|sgd|adamw|rmsprop] [--lr X] [--seed S]
//                [--threads T] [--data DIR | --x x.npy --y y.npy] [--out m.kiln]
//                [--metrics-out FILE] [--graph] [--precision fp32|bf16]
//                [--distributed ...]                                       (src/cli/train.cc)
//   kiln eval    m.kiln | --model mlp|cnn --weights FILE  [--x x.npy --y y.npy] [--data DIR]
//   kiln predict m.kiln --input x.npy [--output y.npy] [--batch-size B] [--threads T]
//   kiln summary m.kiln | --model mlp|cnn
//   kiln freeze  m.kiln -o f.kiln                             (src/cli/model_commands.cc)
//   kiln inspect --model mlp|cnn --cache [--json] [--steps N] [--batch-size B] [--threads T]
//                [--data DIR]                                   (src/cli/inspect.cc)
// Returns the exit code: 0 on success, 1 when the work failed (a kiln::Error, printed as one
// "kiln: error: ..." line on `err`), 2 for bad arguments (one line naming the problem).
#pragma once

#include <ostream>

namespace kiln::cli {

int run(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace kiln::cli

// What quantize.cc shares with the dynamic quantizer and the QAT converter: quantize_model with
// some activation ranges given instead of calibrated (the QAT converter's entry), and the
// weight quantization every int8 path uses.
#pragma once

#include <map>

#include "kiln/compress.h"

namespace kiln::compress {

// quantize_model(model, calibration_inputs, options, report), except that a value id of
// model.graph() found in `fixed_ranges` takes that range instead of its calibrated one.
GraphModel quantize_graph(const GraphModel& model, const Tensor& calibration_inputs,
                          const QuantizeOptions& options, QuantizeReport* report,
                          const std::map<int, ActivationRange>& fixed_ranges);

// Symmetric per-output-channel (last axis) int8 weights in [-qmax, qmax] and their float32
// scales (max |w| / qmax; 1 for an all-zero channel), as quantize_model quantizes weights.
void quantize_weights_per_channel(const Tensor& w, int qmax, Tensor& wq, Tensor& scales);

// The int8 weight bound for `weight_bits` (0: by this CPU, 8 with VNNI, 7 without): 127 or 63.
// ValueError naming `fn` for other values.
int weight_qmax(const char* fn, int weight_bits);

}  // namespace kiln::compress

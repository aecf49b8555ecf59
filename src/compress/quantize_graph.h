// quantize_model with some activation ranges given instead of calibrated: the entry the QAT
// converter (qat.cc) uses to reuse the whole of quantize.cc.
#pragma once

#include <map>

#include "kiln/compress.h"

namespace kiln::compress {

// quantize_model(model, calibration_inputs, options, report), except that a value id of
// model.graph() found in `fixed_ranges` takes that range instead of its calibrated one.
GraphModel quantize_graph(const GraphModel& model, const Tensor& calibration_inputs,
                          const QuantizeOptions& options, QuantizeReport* report,
                          const std::map<int, ActivationRange>& fixed_ranges);

}  // namespace kiln::compress

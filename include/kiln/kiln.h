// The whole public API. Light on purpose: standard headers only, no oneDNN, so a program that
// includes it compiles in well under 3 seconds.
#pragma once

#include "kiln/autograd.h"
#include "kiln/dtype.h"
#include "kiln/dtype_policy.h"
#include "kiln/error.h"
#include "kiln/function.h"
#include "kiln/ops.h"
#include "kiln/shape.h"
#include "kiln/tensor.h"
#include "kiln/threading.h"

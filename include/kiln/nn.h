// Everything for building and training models: variables, layers, models, and (from the
// training side) losses, metrics, optimizers, fit/evaluate/predict, callbacks, checkpoints.
#pragma once

#include "kiln/nn/callbacks.h"
#include "kiln/nn/checkpoint.h"
#include "kiln/nn/config.h"
#include "kiln/nn/initializers.h"
#include "kiln/nn/layer.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/losses.h"
#include "kiln/nn/metrics.h"
#include "kiln/nn/model.h"
#include "kiln/nn/models.h"
#include "kiln/nn/optimizers.h"
#include "kiln/nn/training.h"
#include "kiln/nn/variable.h"
#include "kiln/nn/variable_store.h"

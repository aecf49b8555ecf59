// Everything for building and training models: variables, layers, models.
#pragma once

#include "kiln/nn/initializers.h"
#include "kiln/nn/layer.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/models.h"
#include "kiln/nn/variable.h"
#include "kiln/nn/variable_store.h"

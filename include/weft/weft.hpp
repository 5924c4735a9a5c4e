#pragma once
// weft: the whole public API. Link the `weft` dependency (pkg-config: weft).
#include "weft/error.hpp"
#include "weft/generate.hpp"
#include "weft/model.hpp"
#include "weft/parallel.hpp"
#include "weft/plan.hpp"
#include "weft/processes.hpp"
#include "weft/quantize.hpp"
#include "weft/system.hpp"
#include "weft/sampler.hpp"
#include "weft/tokenizer.hpp"
#include "weft/topology.hpp"

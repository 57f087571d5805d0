// elastilm: the one header a host app includes.
#pragma once

#include "elastilm/config.hpp"
#include "elastilm/elastic/elasticize.hpp"
#include "elastilm/elastic/variant_table.hpp"
#include "elastilm/error.hpp"
#include "elastilm/generate/generate.hpp"
#include "elastilm/generate/sampler.hpp"
#include "elastilm/io/gguf_export.hpp"
#include "elastilm/model/load.hpp"
#include "elastilm/model/perplexity.hpp"
#include "elastilm/model/session.hpp"
#include "elastilm/tokenizer/from_gguf.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"

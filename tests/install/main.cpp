// Builds against the installed headers and runs the smallest sub-model of a synthetic model.
#include <cmath>
#include <cstdio>

#include "elastilm/elastilm.hpp"
#include "elastilm/model/synthetic.hpp"

int main() {
    using namespace elastilm;
    Model<Stories260K> model(synthetic_weights<Stories260K>());
    ThreadPool pool(1);
    Session<Stories260K> s(model, pool, 8);
    const auto logits = s.append(1, 20);
    std::printf("installed elastilm: 20%% sub-model logit[0] = %f\n", logits[0]);
    return std::isfinite(logits[0]) ? 0 : 1;
}

// elastilm::Service — the on-device LLM service of ElastiLM: host apps submit requests from any thread,
// each with its own latency SLO; one worker runs them in order on the shared cores, and for each one the
// orchestrator picks the prompt compression and the sub-models that meet the SLO best.
//
// Why one worker: a phone-class CPU has a handful of cores and every request's kernels already use all
// of them (ThreadPool); running two requests at once would halve both and miss both SLOs. Time spent
// waiting in the queue counts against the request's TTFT, and the orchestrator plans with what is left.
//
// Per request: tokenize → relative SLO to milliseconds → plan every pair at its true cost (the TLM's time
// only on the plans that compress) → if the best plan compresses, the TLM scores the prompt and rates the
// (prompt, model) pairs, and the plan is re-made with those ratings and the time actually left → compress
// → prefill at the prefill ratio → decode at the decode ratio, streaming tokens → result record. Any error in one
// request (bad ids, impossible length, NaN SLO …) fails that request with a message; the service goes on.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <utility>
#include <vector>

#include "elastilm/generate/generate.hpp"
#include "elastilm/service/latency_feedback.hpp"
#include "elastilm/service/orchestrator.hpp"
#include "elastilm/service/prompt_compression.hpp"
#include "elastilm/tokenizer/tokenizer.hpp"

namespace elastilm {

// A piece of the prompt. Protected parts (the instruction or question) are never compressed.
// Either text (needs the service's tokenizer) or token ids.
struct PromptPart {
    std::string text;
    std::vector<int> ids;
    bool protect = false;
};

struct ServiceRequest {
    std::vector<PromptPart> prompt;  // concatenated in order, after BOS
    std::variant<RelativeSlo, Slo> slo = RelativeSlo{};
    int max_new_tokens = 64;
    Elasticity elasticity = Elasticity::prompt_and_model;
    // Called on the worker thread for each generated token; returning false stops the answer.
    std::function<bool(int id, const std::string& piece)> on_token;
};

enum class RequestStatus : std::uint8_t { done, cancelled, rejected, failed };

constexpr std::string_view to_string(RequestStatus s) {
    switch (s) {
        case RequestStatus::done: return "done";
        case RequestStatus::cancelled: return "cancelled";
        case RequestStatus::rejected: return "rejected";
        case RequestStatus::failed: return "failed";
    }
    return "?";
}

struct ServiceResult {
    RequestStatus status = RequestStatus::done;
    std::string error;             // why, when not done
    Slo slo;                       // the absolute objective it was planned for
    Plan plan;
    int prompt_tokens = 0;         // with BOS, before compression
    std::vector<int> kept_ids;     // the compressed prompt
    std::string compressed_prompt; // its text (when a tokenizer is attached)
    std::vector<int> tokens;       // generated ids
    std::string text;              // generated text (when a tokenizer is attached)
    double queue_ms = 0;           // submission → start
    double tlm_ms = 0;             // TLM scoring (inside TTFT)
    double plan_ms = 0;            // planning and compression, the TLM's time excluded (inside TTFT)
    double ttft_ms = 0;            // submission → first token, as the app feels it
    double tpot_ms = 0;
    bool ttft_met = false, tpot_met = false;
    bool slo_met() const { return ttft_met && tpot_met; }
    // The latency profile's correction after this request (LatencyFeedback), at this plan's widths: the
    // next plans take the profile's prefill, decode and TLM times these factors; above 1, that part has
    // been slower than profiled.
    LatencyScale latency_scale;
    // The margins the next plans keep on each part's predicted time (ServiceOptions::confidence).
    LatencyScale latency_margin;
};

// What prompt elasticity needs from the TLM: per-token importance and the decision head's pair ratings,
// and how long producing them takes (the orchestrator counts it in TTFT before deciding to run it).
// An empty scorer disables compression (the service then varies the model only).
struct PromptAnalysis {
    std::vector<float> scores;            // one per prompt token, higher = keep
    std::optional<PairRatings> ratings;   // absent: the orchestrator's prior
};
struct PromptScorer {
    // `keep` flags the tokens no cut may remove (TokenizedPrompt::keep; empty: none but the first): a
    // decision head that reads the prompt's context dependence cuts the prompt around them.
    std::function<PromptAnalysis(std::span<const int> ids, std::span<const std::uint8_t> keep)> analyze;
    std::function<double(int prompt_tokens)> predicted_ms;  // measured on this device
    // Expected ratings before any prompt is read (e.g. measured mean quality per pair); absent: the
    // orchestrator's fixed prior. The decision to run the TLM at all is made with these.
    std::optional<PairRatings> prior = std::nullopt;

    explicit operator bool() const { return bool(analyze); }
};

// The prompt of one request as ids (BOS first) and which of them may never be dropped.
struct TokenizedPrompt {
    std::vector<int> ids;
    std::vector<std::uint8_t> keep;  // 1: special (SpecialTokens) or caller-protected
    int protected_count() const { return int(std::count(keep.begin(), keep.end(), std::uint8_t(1))); }
};

// What the service runs for a request: the plan and the compressed prompt.
struct PreparedPrompt {
    Plan plan;
    std::vector<int> kept;
    double tlm_ms = 0;            // time the TLM took
    double tlm_predicted_ms = 0;  // what was predicted for it (inside plan.predicted_ttft_ms)
};

// Plans a request and compresses its prompt. First plan: every pair at its true cost with the prior
// ratings — when the best plan keeps the whole prompt, or cuts it to its most recent tokens (when the
// prior rates that cut), the TLM never runs. Otherwise the TLM scores the
// prompt, and the plan is made again with the decision head's ratings for this prompt and the time
// actually left (the TLM's time is spent whatever follows, so the second plan charges it to no pair);
// the prompt is cut to the chosen ratio. `elapsed_ms()` is the time spent on the request so far
// (queueing included), read at each planning step.
template <LatencyPredictor L, class Elapsed>
PreparedPrompt prepare_prompt(const TokenizedPrompt& prompt, PlanRequest pr, const L& latency, const PromptScorer& scorer,
                              Elapsed&& elapsed_ms) {
    using clock = std::chrono::steady_clock;
    pr.prompt_tokens = int(prompt.ids.size());
    pr.protected_tokens = prompt.protected_count();
    if (!scorer && (pr.elasticity == Elasticity::prompt_and_model || pr.elasticity == Elasticity::prompt_only))
        pr.elasticity = pr.elasticity == Elasticity::prompt_only ? Elasticity::none : Elasticity::model_only;
    pr.elapsed_ms = elapsed_ms();
    pr.tlm_ms = scorer && scorer.predicted_ms ? scorer.predicted_ms(pr.prompt_tokens) : 0.0;
    PreparedPrompt out;
    // The tokens a plan keeps; `tlm_scores` are needed only by a compressing plan that cuts by them.
    auto kept_by = [&](const Plan& plan, std::span<const float> tlm_scores) {
        return cut_prompt(prompt.ids, plan.prompt_percent, plan.cut, tlm_scores, prompt.keep);
    };
    out.plan = choose_plan(pr, latency, scorer.prior);
    if (!out.plan.uses_tlm) {
        out.kept = kept_by(out.plan, {});
        return out;
    }
    const auto t0 = clock::now();
    const PromptAnalysis a = scorer.analyze(prompt.ids, prompt.keep);
    out.tlm_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    require(a.scores.size() == prompt.ids.size(), "TLM",
            "scored " + std::to_string(a.scores.size()) + " of " + std::to_string(prompt.ids.size()) + " prompt tokens");
    const double tlm_predicted = pr.tlm_ms;
    pr.elapsed_ms = elapsed_ms();  // the TLM's actual time is in here now
    pr.tlm_ms = 0;
    out.plan = choose_plan(pr, latency, a.ratings ? a.ratings : scorer.prior);
    out.plan.uses_tlm = true;                       // it ran for this request
    out.plan.predicted_ttft_ms += tlm_predicted;    // as predicted before it ran: comparable with the measured TTFT
    out.tlm_predicted_ms = tlm_predicted;
    out.kept = kept_by(out.plan, a.scores);  // the second plan may still cut by recency, if rated higher
    return out;
}

// A submitted request: wait for its result, or cancel it (queued: never runs; running: stops at the next
// token). Copyable; all copies refer to the same request.
class Ticket {
public:
    // A copy: a reference would dangle once the last Ticket copy is gone (e.g. submit(r).wait()).
    ServiceResult wait() const { return result_.get(); }
    bool ready() const { return result_.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }
    void cancel() const { cancelled_->store(true); }

private:
    template <ModelConfig, LatencyPredictor>
    friend class Service;
    std::shared_future<ServiceResult> result_;
    std::shared_ptr<std::atomic<bool>> cancelled_;
};

struct ServiceOptions {
    int queue_capacity = 16;  // requests waiting (not counting the running one); more are rejected
    int context = 0;          // KV cache length; 0 = the model's
    SamplerOptions sampling;  // greedy by default
    // How much each request's measured TTFT/TPOT corrects the latency profile (LatencyFeedback); 0 plans
    // with the profile as it was taken.
    double latency_feedback = 0.25;
    // Plans keep a margin of e^(confidence · spread) on each part's predicted time, the spread being that
    // of its recent overruns of the prediction (LatencyFeedback::margin; 0.1 before any request). 1.65: a part
    // overruns its margin about one request in twenty. 0 plans to the predictions themselves.
    double confidence = 1.65;
    double headroom = 1.0;  // and plan to this share of each SLO: a fixed margin on top, in (0, 1]
    // Compressing plans may keep the prompt's most recent tokens, with no TLM run, where the prior rates
    // that above the TLM's choice (PromptScorer::prior's recency curve, measured on the served domain's
    // items). Turn off when questions refer to text far back in prompts unlike those the prior was measured on.
    bool recency_cuts = true;
};

template <ModelConfig Cfg, LatencyPredictor Latency>
class Service {
public:
    // `tokenizer` may be null (requests must then give token ids); `scorer` may be empty (no prompt
    // elasticity). All referenced objects must outlive the service.
    Service(const Model<Cfg>& model, const Tokenizer* tokenizer, ThreadPool& pool, const Latency& latency,
            PromptScorer scorer = {}, ServiceOptions options = {})
        : tokenizer_(tokenizer), latency_(latency), scorer_(std::move(scorer)), options_(options),
          feedback_(latency, feedback_weight(options.latency_feedback)),
          special_(tokenizer ? SpecialTokens::from(*tokenizer) : SpecialTokens{}),
          session_(model, pool, options.context > 0 ? options.context : Cfg::context) {
        require(options_.queue_capacity > 0, "Service", "queue capacity must be at least 1");
        require(std::isfinite(options_.confidence) && options_.confidence >= 0, "Service",
                "confidence must be a finite number >= 0 (standard deviations of the latency errors), got " +
                    std::to_string(options_.confidence));
        require(options_.headroom > 0 && options_.headroom <= 1, "Service",
                "headroom must be in (0, 1], got " + std::to_string(options_.headroom));
        if (tokenizer_) require(tokenizer_->vocab_size() == Cfg::vocab_size, "Service",
                                "tokenizer has " + std::to_string(tokenizer_->vocab_size()) +
                                    " tokens but the model's vocabulary is " + std::to_string(Cfg::vocab_size));
        worker_ = std::thread([this] { work(); });
    }

    // Finishes the running request; queued ones end as cancelled.
    ~Service() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        worker_.join();
    }
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    // Thread-safe. Never blocks on the model and never throws for the request's content: a full queue
    // or a stopped service gives a ticket that is already `rejected`; bad content fails when it runs.
    Ticket submit(ServiceRequest request) {
        Job job{std::move(request), {}, std::make_shared<std::atomic<bool>>(false), clock::now()};
        Ticket t;
        t.result_ = job.promise.get_future().share();
        t.cancelled_ = job.cancelled;
        {
            std::lock_guard lock(mutex_);
            if (stopping_ || int(queue_.size()) >= options_.queue_capacity) {
                ServiceResult r;
                r.status = RequestStatus::rejected;
                r.error = stopping_ ? "the service is shutting down"
                                    : "queue full (" + std::to_string(options_.queue_capacity) + " requests waiting): try again later";
                job.promise.set_value(std::move(r));
                return t;
            }
            queue_.push_back(std::move(job));
        }
        wake_.notify_one();
        return t;
    }

    int queued() const {
        std::lock_guard lock(mutex_);
        return int(queue_.size());
    }

private:
    using clock = std::chrono::steady_clock;
    static double ms(clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

    struct Job {
        ServiceRequest request;
        std::promise<ServiceResult> promise;
        std::shared_ptr<std::atomic<bool>> cancelled;
        clock::time_point submitted;
    };

    void work() {
        for (;;) {
            Job job;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;
                job = std::move(queue_.front());
                queue_.pop_front();
                if (stopping_) {
                    ServiceResult r;
                    r.status = RequestStatus::cancelled;
                    r.error = "the service shut down before the request ran";
                    job.promise.set_value(std::move(r));
                    continue;
                }
            }
            job.promise.set_value(serve(job));
        }
    }

    ServiceResult serve(Job& job) {
        ServiceResult r;
        r.queue_ms = ms(clock::now() - job.submitted);
        if (job.cancelled->load()) {
            r.status = RequestStatus::cancelled;
            r.error = "cancelled before it ran";
            return r;
        }
        try {
            run(job, r);
        } catch (const std::exception& e) {
            r.status = RequestStatus::failed;
            r.error = e.what();
        }
        return r;
    }

    TokenizedPrompt tokenize(const ServiceRequest& req) const {
        TokenizedPrompt p;
        p.ids.push_back(special_.bos);
        p.keep.push_back(1);
        for (const PromptPart& part : req.prompt) {
            std::vector<int> ids = part.ids;
            if (!part.text.empty()) {
                require(part.ids.empty(), "request", "a prompt part has both text and ids");
                require(tokenizer_ != nullptr, "request", "text prompt given, but the service has no tokenizer");
                ids = tokenizer_->encode(part.text, false);
            }
            for (int id : ids) {
                require(id >= 0 && id < Cfg::vocab_size, "request",
                        "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(Cfg::vocab_size) + ")");
                p.ids.push_back(id);
                p.keep.push_back(part.protect || special_.contains(id) ? 1 : 0);
            }
        }
        require(p.ids.size() > 1, "request", "empty prompt");
        return p;
    }

    void run(Job& job, ServiceResult& r) {
        const ServiceRequest& req = job.request;
        require(req.max_new_tokens >= 1, "request", "max_new_tokens must be at least 1");
        const TokenizedPrompt prompt = tokenize(req);
        const int n = int(prompt.ids.size());
        r.prompt_tokens = n;
        r.slo = std::holds_alternative<Slo>(req.slo) ? std::get<Slo>(req.slo)
                                                     : absolute(std::get<RelativeSlo>(req.slo), latency_, n, req.max_new_tokens);
        check(r.slo);

        PlanRequest pr;
        pr.new_tokens = req.max_new_tokens;
        pr.slo = r.slo;
        pr.elasticity = req.elasticity;
        pr.headroom = options_.headroom;
        pr.recency_cuts = options_.recency_cuts;
        pr.margin = feedback_.margin(options_.confidence);
        pr.max_kept = session_.context() - req.max_new_tokens;
        require(pr.max_kept >= 1, "request",
                std::to_string(req.max_new_tokens) + " new tokens leave no room for a prompt in the context of " +
                    std::to_string(session_.context()));
        const auto planning = clock::now();
        // Planned with the profile, and the TLM's own, as corrected by the requests so far.
        PromptScorer scorer = scorer_;
        if (scorer.predicted_ms) scorer.predicted_ms = [this](int tokens) { return feedback_.tlm_ms(scorer_.predicted_ms(tokens)); };
        PreparedPrompt prepared = prepare_prompt(prompt, pr, feedback_, scorer, [&] { return ms(clock::now() - job.submitted); });
        r.plan = prepared.plan;
        r.tlm_ms = prepared.tlm_ms;
        r.plan_ms = ms(clock::now() - planning) - prepared.tlm_ms;
        const std::vector<int>& kept = prepared.kept;
        require(int(kept.size()) <= pr.max_kept, "request",
                "prompt of " + std::to_string(n) + " tokens + " + std::to_string(req.max_new_tokens) +
                    " new tokens exceed the context of " + std::to_string(session_.context()) +
                    (r.plan.uses_tlm ? " even compressed to " + std::to_string(kept.size()) + " tokens"
                                     : " (prompt compression is off for this request)"));
        r.kept_ids = kept;
        if (tokenizer_) r.compressed_prompt = tokenizer_->decode(kept);

        GenerateOptions g;
        g.max_new_tokens = req.max_new_tokens;
        g.eos_id = tokenizer_ ? tokenizer_->eos_id() : -1;
        g.prefill_percent = r.plan.prefill_percent;
        g.decode_percent = r.plan.decode_percent;
        g.sampling = options_.sampling;
        session_.reset();
        int prev = kept.back();
        bool stopped_by_app = false;
        const auto started = clock::now();
        const GenerateResult gr = generate(session_, kept, g, [&](int id) {
            std::string piece = tokenizer_ ? tokenizer_->decode_piece(prev, id) : std::string();
            prev = id;
            r.text += piece;
            if (job.cancelled->load()) return false;
            if (req.on_token && !req.on_token(id, piece)) stopped_by_app = true;
            return !stopped_by_app;
        });
        r.tokens = gr.tokens;
        r.ttft_ms = ms(started - job.submitted) + gr.ttft_ms;
        r.tpot_ms = gr.tpot_ms;
        r.ttft_met = r.ttft_ms <= r.slo.ttft_ms;
        r.tpot_met = r.tokens.size() < 2 || r.tpot_ms <= r.slo.tpot_ms;
        if (options_.latency_feedback > 0 && gr.ttft_ms > 0) {  // planning start to first token, as predicted
            if (r.plan.uses_tlm) feedback_.observe_tlm(prepared.tlm_predicted_ms, prepared.tlm_ms);
            feedback_.observe_ttft(r.plan.prefill_percent, r.plan.predicted_ttft_ms - prepared.tlm_predicted_ms,
                                   ms(started - planning) + gr.ttft_ms - prepared.tlm_ms);
            if (gr.tokens.size() >= 2) feedback_.observe_tpot(r.plan.decode_percent, r.plan.predicted_tpot_ms, gr.tpot_ms);
        }
        r.latency_scale = feedback_.scale(r.plan.prefill_percent, r.plan.decode_percent);
        r.latency_margin = feedback_.margin(options_.confidence);
        if (job.cancelled->load()) {
            r.status = RequestStatus::cancelled;
            r.error = "cancelled after " + std::to_string(r.tokens.size()) + " tokens";
        }
    }

    // LatencyFeedback's weight for ServiceOptions::latency_feedback (0, off: any valid weight, never updated).
    static double feedback_weight(double w) {
        require(w >= 0 && w <= 1, "Service", "latency_feedback must be in [0, 1], got " + std::to_string(w));
        return w > 0 ? w : 1.0;
    }

    const Tokenizer* tokenizer_;
    const Latency& latency_;  // the profile: relative SLOs are fractions of its full-model times
    PromptScorer scorer_;
    ServiceOptions options_;
    LatencyFeedback<Latency> feedback_;  // what plans are made with (only the worker touches it)
    SpecialTokens special_;  // never compressed away
    Session<Cfg> session_;  // one KV cache, reused by every request (only the worker touches it)

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Job> queue_;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace elastilm

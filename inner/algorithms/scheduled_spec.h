#pragma once
// The registry entry of a scheduled algorithm from its options type and its Algorithm: what
// every such spec has in common (resolve = the options' resolved form, create, schedule_of),
// so an algorithm's spec() names only what is its own.
#include <functional>
#include <memory>
#include <string>

#include "inner/algorithms/registry.h"

namespace qsched::inner {

/// Options: static from_json(section) and a `schedule` member; Alg: constructible from
/// (RunConfig, schedule). `resolved_form` turns parsed options into the section config.json
/// records (from_json must read it back to the same options).
template <class Alg, class Options>
AlgorithmSpec scheduled_spec(std::string name, std::string doc, sched::Quantity quantity,
                             std::function<json(const Options&)> resolved_form,
                             std::function<std::string(const Options&)> quantizes) {
  AlgorithmSpec s;
  s.name = std::move(name);
  s.doc = std::move(doc);
  s.quantity = quantity;
  s.resolve = [resolved_form](const json& section) {
    return resolved_form(Options::from_json(section));
  };
  s.create = [](const RunConfig& cfg, std::unique_ptr<sched::Schedule> schedule) {
    return std::make_unique<Alg>(cfg, std::move(schedule));
  };
  s.schedule_of = [](const json& resolved) { return Options::from_json(resolved).schedule; };
  s.quantizes = [quantizes](const json& resolved) {
    return quantizes(Options::from_json(resolved));
  };
  return s;
}

}  // namespace qsched::inner

#include "schedules/schedule.h"

#include <cmath>
#include <sstream>

namespace qsched::sched {

std::string to_string(Quantity q) { return q == Quantity::kFraction ? "fraction" : "noise"; }

Quantity quantity_from_string(const std::string& s) {
  if (s == "fraction") return Quantity::kFraction;
  TORCH_CHECK_VALUE(s == "noise", "schedule quantity = \"", s, "\" is not one of: fraction, noise");
  return Quantity::kNoise;
}

void check_values(Quantity q, const std::vector<double>& v, const std::vector<double>& prev,
                  bool last_epoch, int64_t epoch, const std::string& what) {
  TORCH_CHECK_VALUE(!v.empty(), what, ": epoch ", epoch, " has no values");
  TORCH_CHECK_VALUE(prev.empty() || prev.size() == v.size(), what, ": epoch ", epoch, " has ",
                    v.size(), " values, the previous epoch ", prev.size());
  for (size_t l = 0; l < v.size(); ++l) {
    double x = v[l];
    auto where = [&] {
      std::ostringstream s;
      s << what << ": epoch " << epoch << ", layer " << l << ": " << to_string(q) << " " << x;
      return s.str();
    };
    TORCH_CHECK_VALUE(std::isfinite(x), where(), ". Violated constraint: finite");
    if (q == Quantity::kFraction) {
      TORCH_CHECK_VALUE(x >= 0.0 && x <= 1.0, where(), ". Violated constraint: 0 <= fraction <= 1");
      TORCH_CHECK_VALUE(prev.empty() || x >= prev[l], where(), " < ", prev[l], " at epoch ",
                        epoch - 1, ". Violated constraint: fractions are non-decreasing");
      TORCH_CHECK_VALUE(!last_epoch || x == 1.0, where(),
                        " at the last epoch. Violated constraint: fraction is 1 at the last epoch");
    } else {
      TORCH_CHECK_VALUE(x >= 0.0, where(), ". Violated constraint: noise >= 0");
      TORCH_CHECK_VALUE(prev.empty() || x <= prev[l], where(), " > ", prev[l], " at epoch ",
                        epoch - 1, ". Violated constraint: noise levels are non-increasing");
      TORCH_CHECK_VALUE(!last_epoch || x == 0.0, where(),
                        " at the last epoch. Violated constraint: noise is 0 at the last epoch");
    }
  }
}

void check_table(const ScheduleTable& t, const std::string& what) {
  TORCH_CHECK_VALUE(t.epochs() >= 1, what, ": the table has no epochs");
  TORCH_CHECK_VALUE(t.layers() >= 1, what, ": the table has no layers");
  for (int64_t e = 0; e < t.epochs(); ++e) {
    TORCH_CHECK_VALUE(static_cast<int64_t>(t.values[e].size()) == t.layers(), what, ": epoch ", e,
                      " has ", t.values[e].size(), " values, expected ", t.layers(),
                      " (one per layer)");
    check_values(t.quantity, t.values[e], e == 0 ? std::vector<double>{} : t.values[e - 1],
                 e + 1 == t.epochs(), e, what);
  }
}

json ScheduleTable::to_json() const {
  return {{"quantity", to_string(quantity)},
          {"epochs", epochs()},
          {"layers", layers()},
          {"values", values}};
}

ScheduleTable ScheduleTable::from_json(const json& j, const std::string& what) {
  TORCH_CHECK_VALUE(j.is_object(), what,
                    ": expected a JSON object with \"quantity\" and \"values\"");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& k = it.key();
    TORCH_CHECK_VALUE(k == "quantity" || k == "values" || k == "epochs" || k == "layers", what,
                      ": unknown key '", k, "' (valid keys: epochs, layers, quantity, values)");
  }
  TORCH_CHECK_VALUE(j.contains("quantity") && j["quantity"].is_string(), what,
                    ": missing string key 'quantity' (fraction | noise)");
  TORCH_CHECK_VALUE(j.contains("values") && j["values"].is_array(), what,
                    ": missing key 'values' (array of per-epoch arrays of per-layer numbers)");
  ScheduleTable t;
  t.quantity = quantity_from_string(j["quantity"].get<std::string>());
  for (const auto& row : j["values"]) {
    TORCH_CHECK_VALUE(row.is_array(), what, ": values[", t.values.size(), "] is not an array");
    std::vector<double> r;
    for (const auto& x : row) {
      TORCH_CHECK_VALUE(x.is_number(), what, ": values[", t.values.size(), "] holds a non-number");
      r.push_back(x.get<double>());
    }
    t.values.push_back(std::move(r));
  }
  if (j.contains("epochs"))
    TORCH_CHECK_VALUE(j["epochs"].is_number_integer() && j["epochs"].get<int64_t>() == t.epochs(),
                      what, ": 'epochs' does not match the number of rows of 'values'");
  if (j.contains("layers"))
    TORCH_CHECK_VALUE(j["layers"].is_number_integer() && j["layers"].get<int64_t>() == t.layers(),
                      what, ": 'layers' does not match the length of the rows of 'values'");
  check_table(t, what);
  return t;
}

ScheduleTable materialize(Schedule& s, int64_t epochs, int64_t layers, const std::string& what) {
  TORCH_CHECK(s.is_static(), "materialize: ", what, " is not a static schedule");
  ScheduleTable t;
  t.quantity = s.quantity();
  ScheduleContext ctx;
  ctx.total_epochs = epochs;
  ctx.num_layers = layers;
  for (int64_t l = 0; l < layers; ++l)
    ctx.rel_depth.push_back(layers == 1 ? 0.0 : static_cast<double>(l) / (layers - 1));
  for (int64_t e = 0; e < epochs; ++e) {
    ctx.epoch = e;
    auto v = s.values(ctx);
    TORCH_CHECK_VALUE(static_cast<int64_t>(v.size()) == layers, what, ": gave ", v.size(),
                      " values at epoch ", e, " for ", layers, " layers");
    ctx.previous = v;
    t.values.push_back(std::move(v));
  }
  check_table(t, what);
  return t;
}

std::vector<double> TableSchedule::values(const ScheduleContext& ctx) {
  TORCH_CHECK_VALUE(ctx.epoch >= 0 && ctx.epoch < table_.epochs(), "schedule table has ",
                    table_.epochs(), " epochs, asked for epoch ", ctx.epoch);
  TORCH_CHECK_VALUE(ctx.num_layers == table_.layers(), "schedule table has ", table_.layers(),
                    " layers, the network has ", ctx.num_layers, " quantized layers");
  TORCH_CHECK_VALUE(ctx.total_epochs == table_.epochs(), "schedule table has ", table_.epochs(),
                    " epochs, the run has ", ctx.total_epochs);
  return table_.values[ctx.epoch];
}

json TableSchedule::describe() const {
  json j = table_.to_json();
  j["family"] = "table";
  return j;
}

StepListSchedule::StepListSchedule(std::vector<double> portions, int64_t epochs_per_step)
    : portions_(std::move(portions)), epochs_per_step_(epochs_per_step) {
  TORCH_CHECK_VALUE(!portions_.empty(), "schedule.portions is empty");
  TORCH_CHECK_VALUE(epochs_per_step_ >= 1, "schedule.epochs_per_step = ", epochs_per_step_,
                    ". Violated constraint: epochs_per_step >= 1");
  for (size_t k = 0; k < portions_.size(); ++k) {
    TORCH_CHECK_VALUE(portions_[k] >= 0 && portions_[k] <= 1, "schedule.portions[", k,
                      "] = ", portions_[k], ". Violated constraint: 0 <= portion <= 1");
    TORCH_CHECK_VALUE(k == 0 || portions_[k] >= portions_[k - 1], "schedule.portions[", k,
                      "] = ", portions_[k], " < portions[", k - 1,
                      "]. Violated constraint: portions are non-decreasing");
  }
  TORCH_CHECK_VALUE(portions_.back() == 1.0, "schedule.portions ends with ", portions_.back(),
                    ". Violated constraint: the last portion is 1");
}

std::vector<double> StepListSchedule::values(const ScheduleContext& ctx) {
  int64_t k =
      std::min<int64_t>(ctx.epoch / epochs_per_step_, static_cast<int64_t>(portions_.size()) - 1);
  return std::vector<double>(ctx.num_layers, portions_[k]);
}

int64_t StepListSchedule::min_epochs() const {
  return (static_cast<int64_t>(portions_.size()) - 1) * epochs_per_step_ + 1;
}

json StepListSchedule::describe() const {
  return {{"family", "steps"}, {"portions", portions_}, {"epochs_per_step", epochs_per_step_}};
}

std::vector<double> inq_paper_portions(int bits) {
  switch (bits) {
    case 4:
      return {0.3, 0.5, 0.8, 0.9, 0.95, 1.0};
    case 3:
      return {0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0};
    case 2:
      return {0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0};
    default:
      return {0.5, 0.75, 0.875, 1.0};
  }
}

}  // namespace qsched::sched

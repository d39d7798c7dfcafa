//! A definition as a graph to draw: each state with its kind and its edges (`Next`, Choice
//! branches and `Default`, `Catch` targets), Parallel branches as nested graphs. The admin
//! API's `GET /_wasmfn/workflows/NAME` answers with it and the console draws it.

use serde::Serialize;

use super::definition::{Definition, State};

/// A state machine to draw.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    /// The first state.
    pub start_at: String,
    /// Every state, in the order a reader meets them from `start_at` (then the rest by name).
    pub states: Vec<Node>,
}

/// One state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Its name.
    pub name: String,
    /// `Task`, `Pass`, `Choice`, `Wait`, `Parallel`, `Succeed` or `Fail`.
    pub kind: &'static str,
    /// The function a Task runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Whether the execution (or branch) can end here.
    pub end: bool,
    /// Where it can go.
    pub edges: Vec<Edge>,
    /// A Parallel state's branches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Graph>,
}

/// One way out of a state.
#[derive(Debug, Serialize)]
pub struct Edge {
    /// The state it leads to.
    pub to: String,
    /// `next`, `choice`, `default` or `catch`.
    pub kind: &'static str,
    /// What takes it (a Choice rule, the caught errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Graph {
    /// The graph of `definition`.
    pub fn of(definition: &Definition) -> Graph {
        let mut order: Vec<&str> = Vec::new();
        let mut queue = std::collections::VecDeque::from([definition.start_at.as_str()]);
        while let Some(name) = queue.pop_front() {
            if order.contains(&name) || !definition.states.contains_key(name) {
                continue;
            }
            order.push(name);
            for edge in edges(&definition.states[name]) {
                let to = definition
                    .states
                    .get_key_value(edge.to.as_str())
                    .map(|(k, _)| k.as_str());
                queue.extend(to);
            }
        }
        for name in definition.states.keys() {
            if !order.contains(&name.as_str()) {
                order.push(name);
            }
        }
        let states = order
            .into_iter()
            .map(|name| node(name, &definition.states[name]))
            .collect();
        Graph {
            start_at: definition.start_at.clone(),
            states,
        }
    }
}

fn node(name: &str, state: &State) -> Node {
    let (kind, resource, end, branches) = match state {
        State::Task { resource, flow, .. } => ("Task", Some(resource.clone()), flow.end, vec![]),
        State::Pass { flow, .. } => ("Pass", None, flow.end, vec![]),
        State::Choice { .. } => ("Choice", None, false, vec![]),
        State::Wait { flow, .. } => ("Wait", None, flow.end, vec![]),
        State::Parallel { flow, branches, .. } => (
            "Parallel",
            None,
            flow.end,
            branches.iter().map(Graph::of).collect(),
        ),
        State::Succeed {} => ("Succeed", None, true, vec![]),
        State::Fail { .. } => ("Fail", None, true, vec![]),
    };
    Node {
        name: name.to_string(),
        kind,
        resource,
        end,
        edges: edges(state),
        branches,
    }
}

fn edges(state: &State) -> Vec<Edge> {
    let mut out = Vec::new();
    let next = |to: &Option<String>, out: &mut Vec<Edge>| {
        if let Some(to) = to {
            out.push(Edge {
                to: to.clone(),
                kind: "next",
                label: None,
            });
        }
    };
    match state {
        State::Task { flow, recovery, .. } | State::Parallel { flow, recovery, .. } => {
            next(&flow.next, &mut out);
            for c in &recovery.catch {
                out.push(Edge {
                    to: c.next.clone(),
                    kind: "catch",
                    label: Some(c.error_equals.join(", ")),
                });
            }
        }
        State::Pass { flow, .. } | State::Wait { flow, .. } => next(&flow.next, &mut out),
        State::Choice { choices, default } => {
            for rule in choices {
                out.push(Edge {
                    to: rule.next.clone(),
                    kind: "choice",
                    label: Some(choice_label(rule)),
                });
            }
            if let Some(d) = default {
                out.push(Edge {
                    to: d.clone(),
                    kind: "default",
                    label: Some("Default".into()),
                });
            }
        }
        State::Succeed {} | State::Fail { .. } => {}
    }
    out
}

/// `$.total NumericGreaterThan 100`, or the comparison's JSON when it nests (`And`, `Or`).
fn choice_label(rule: &super::definition::ChoiceRule) -> String {
    let test = rule
        .test
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" ");
    match &rule.variable {
        Some(v) => format!("{v} {test}"),
        None => test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_branches_catches_and_parallel_lanes_become_edges_and_subgraphs() {
        let d = Definition::parse_json(
            r#"{"StartAt": "Check", "States": {
                "Check": {"Type": "Choice", "Choices": [
                    {"Variable": "$.total", "NumericGreaterThan": 100, "Next": "Both"}],
                    "Default": "Done"},
                "Both": {"Type": "Parallel", "Next": "Done",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
                    "Branches": [
                        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
                        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}]},
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail"}}}"#,
        )
        .unwrap();
        let g = Graph::of(&d);
        let names: Vec<_> = g.states.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["Check", "Both", "Done", "Failed"]);
        let check = &g.states[0];
        assert_eq!(check.edges[0].kind, "choice");
        assert_eq!(
            check.edges[0].label.as_deref(),
            Some("$.total NumericGreaterThan 100")
        );
        assert_eq!(check.edges[1].kind, "default");
        let both = &g.states[1];
        assert_eq!(both.branches.len(), 2);
        assert_eq!(both.branches[1].states[0].name, "B");
        assert!(both
            .edges
            .iter()
            .any(|e| e.kind == "catch" && e.to == "Failed"));
        assert!(g.states[2].end);
    }
}

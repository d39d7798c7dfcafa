//! Saga workflow definitions through the real binary: `wasmfn workflow check` accepts the
//! seed's order saga and refuses broken definitions naming the state.

mod common;

use common::wasmfn;

const ORDER_SAGA: &str = r#"{
  "StartAt": "ReserveInventory",
  "States": {
    "ReserveInventory": {"Type": "Task", "Resource": "reserve-inventory", "Next": "ProcessPayment",
      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "OrderFailed"}]},
    "ProcessPayment": {"Type": "Task", "Resource": "process-payment", "Next": "ShipOrder",
      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "ReleaseInventory"}]},
    "ShipOrder": {"Type": "Task", "Resource": "ship-order", "End": true,
      "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "RefundPayment"}]},
    "RefundPayment": {"Type": "Task", "Resource": "refund-payment", "Next": "ReleaseInventory"},
    "ReleaseInventory": {"Type": "Task", "Resource": "release-inventory", "Next": "OrderFailed"},
    "OrderFailed": {"Type": "Fail", "Error": "OrderFailed"}
  }
}"#;

#[test]
fn workflow_check_accepts_the_order_saga_and_names_broken_states() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("order-saga.json");
    std::fs::write(&good, ORDER_SAGA).unwrap();
    let bad = dir.path().join("loop.toml");
    std::fs::write(
        &bad,
        "StartAt = \"A\"\n[States.A]\nType = \"Task\"\nResource = \"f\"\nNext = \"B\"\n\
         [States.B]\nType = \"Pass\"\nNext = \"A\"\n",
    )
    .unwrap();
    let out = wasmfn()
        .args(["workflow", "check"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("6 states, starts at `ReserveInventory`"),
        "{stdout}"
    );

    let out = wasmfn()
        .args(["workflow", "check"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("loop.toml: state `A`: can never finish"),
        "{stderr}"
    );
}

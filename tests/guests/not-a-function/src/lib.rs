//! A valid component of a world that is none of wasmfn's: the host must refuse it by name.

wit_bindgen::generate!({
    inline: "
        package test:calculator;
        world calculator {
            export add: func(a: u32, b: u32) -> u32;
        }
    ",
});

struct Calculator;

impl Guest for Calculator {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

export!(Calculator);

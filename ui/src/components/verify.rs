//! The code screen: enter the 6-digit code mailed for this signup, or ask for a new one.
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{error_for, input_value, AppContext};
use crate::{
    backend::UiError,
    state::{Action, Screen},
};

#[derive(Properties, PartialEq)]
pub struct VerifyProps {
    pub signup_id: String,
    pub email: String,
}

#[function_component(Verify)]
pub fn verify(props: &VerifyProps) -> Html {
    let ctx = use_context::<AppContext>().expect("AppContext");
    let code = use_state(String::new);
    let error = use_state(|| None::<UiError>);
    let info = use_state(|| None::<String>);
    let busy = use_state(|| false);

    let onsubmit = {
        let (ctx, code, error, busy) = (ctx.clone(), code.clone(), error.clone(), busy.clone());
        let signup_id = props.signup_id.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if *busy {
                return;
            }
            busy.set(true);
            let (ctx, code, error, busy, signup_id) =
                (ctx.clone(), (*code).trim().to_string(), error.clone(), busy.clone(), signup_id.clone());
            spawn_local(async move {
                let result = ctx.backend.verify(signup_id, code).await;
                busy.set(false);
                match result {
                    Ok(user) => ctx.state.dispatch(Action::LoggedIn(user)),
                    Err(err) => error.set(Some(err)),
                }
            });
        })
    };
    let resend = {
        let (ctx, error, info) = (ctx.clone(), error.clone(), info.clone());
        let signup_id = props.signup_id.clone();
        Callback::from(move |_| {
            let (ctx, error, info, signup_id) = (ctx.clone(), error.clone(), info.clone(), signup_id.clone());
            spawn_local(async move {
                match ctx.backend.resend(signup_id).await {
                    Ok(()) => {
                        error.set(None);
                        info.set(Some("A new code is on its way.".into()));
                    }
                    Err(err) => {
                        info.set(None);
                        error.set(Some(err));
                    }
                }
            });
        })
    };
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.state.dispatch(Action::Show(Screen::Signup)))
    };
    let oninput = {
        let code = code.clone();
        Callback::from(move |e: InputEvent| {
            code.set(input_value(&e).chars().filter(char::is_ascii_digit).take(6).collect())
        })
    };
    let code_error = error_for(&error, "code");
    let form_error = error_for(&error, "form").or_else(|| error_for(&error, "email"));

    html! {
        <main class="centered">
            <form class="card auth" {onsubmit} novalidate=true aria-labelledby="verify-title">
                <h1 id="verify-title">{ "Check your email" }</h1>
                <p class="muted">{ "We sent a 6-digit code to " }<strong>{ props.email.clone() }</strong>{ "." }</p>
                <label for="verify-code">{ "Code" }</label>
                <input id="verify-code" name="code" class="code" inputmode="numeric" autocomplete="one-time-code"
                    pattern="[0-9]{6}" maxlength="6" required=true value={(*code).clone()} {oninput}
                    aria-invalid={code_error.is_some().to_string()} aria-describedby="verify-code-error" />
                <p id="verify-code-error" class="field-error" role="alert">{ code_error.unwrap_or_default() }</p>
                <p class="form-error" role="alert">{ form_error.unwrap_or_default() }</p>
                <p class="info" role="status">{ (*info).clone().unwrap_or_default() }</p>
                <button type="submit" id="verify-submit" class="primary" disabled={*busy || code.len() != 6}>{ if *busy { "Checking…" } else { "Confirm" } }</button>
                <p class="switch">
                    <button type="button" id="resend-code" class="link" onclick={resend}>{ "Send a new code" }</button>
                    { " · " }
                    <button type="button" class="link" onclick={back}>{ "Use another email" }</button>
                </p>
            </form>
        </main>
    }
}

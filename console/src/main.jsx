// Entry point: takes the key from the URL fragment, then renders the console.
import { render } from "preact";
import { takeKeyFromUrl } from "./api.js";
import { App } from "./app.jsx";
import "./style.css";

takeKeyFromUrl();
render(<App />, document.getElementById("app"));

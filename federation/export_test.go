package federation

// MaxMaxMessage is exported for the test that checks it against package
// transport's.
const MaxMaxMessage = maxMaxMessage

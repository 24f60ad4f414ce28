// express4 is Express 4 installed under an alias; its API is typed close enough by @types/express.
declare module 'express4' {
  import express from 'express'
  export default express
}
